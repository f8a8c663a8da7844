"""The hostile plant, OPC 40100 part: attacks on a running station's VisionSystem server, one
row each, with raw service calls (``_shared.attempt``) and asyncua clients.

A station in a scratch folder (the mean-channel OpenVINO bundle, a file camera, link security
on) serves OPC 40100; ``opcua_cases`` puts each attack to it and records every step's status
as the "now" side of ``reports/plant/hostile_opcua.json`` (its "before" rows, measured on older
checkouts, stay as recorded); the table is ``reports/plant/hostile_opcua.md``. Exit code 1 when
a row was not refused or handled. ``--out`` writes elsewhere (a quick check).

    python bench/hostile_opcua.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import previous_report, recorded, save_report, table
from _shared import (
    Attempt,
    Events,
    activate_foreign,
    attempt,
    camera_folder,
    job_args,
    line_config,
    mes_client,
    on_subscription,
    rogue,
    subscribe_until_refused,
    write_mean_bundle,
)
from asyncua import Client, ua

from inspection.core.jsonl import read_jsonl
from inspection.data.demo import write_demo_product
from inspection.line.config import LinkSecurity, MachineVisionConfig
from inspection.line.machine_vision import RESULT_READY_EVENT
from inspection.line.machine_vision.access import add_user
from inspection.line.mosquitto import free_port
from inspection.line.pki import LinePki
from inspection.line.station import LineStation

OUT = Path(__file__).resolve().parents[1] / "reports" / "plant"
PASSWORD = "a long operator password"
USERS = {"op-a": "operator", "op-b": "operator", "eng": "engineer", "obs": "observer"}
Ids = dict[str, ua.NodeId]
EXPECTED = (
    "refused",
    "start accepted (all 5 steps Good); op-b's Stop refused",
    "accepted (all 5 steps Good); state after: Preoperational",
    "new ResultId",
    "each refused",
    "3 of 3 named",
    "told ResultState 2",
    "5 made, then BadTooManySubscriptions; the MES's subscribe: Good",
)
"""How each "now" row starts: refused, or (foreign stop, Reset, reused MeasId, subscriptions,
the control journal, a timeout) handled."""


def station(root: Path, mode: str = "sign_and_encrypt") -> LineStation:
    """A secured station serving OPC 40100 (brick live, grass without a model) with users
    ``mes`` (certificate, admin), ``op-a``/``op-b`` (operators), ``eng`` (engineer)."""
    product = write_demo_product(root / "datasets", "brick", seed=7, n_train=4,
                                 n_test_good=3, n_test_per_defect=1, size=128)  # fmt: skip
    bundle = write_mean_bundle(root / "bundle", input_size=(128, 128), product="brick")
    config = line_config(root, bundle, camera_folder(root, product, count=4),
                         machine_vision=MachineVisionConfig(enabled=True, port=free_port()),
                         security=LinkSecurity(mode=mode, pki_dir=root / "pki"))  # fmt: skip
    users = config.security.pki_dir / "opcua-users.yaml"
    add_user(users, "mes", "admin", None)
    add_user(users, "mes-old", "admin", None)  # its certificate revoked by a case
    for name, role in USERS.items():
        add_user(users, name, role, PASSWORD)
    built = LineStation.build(config)
    built.start()
    return built


async def node_ids(client: Client) -> tuple[int, Ids]:
    """The MachineVision namespace and the NodeIds of the objects and methods attacked."""
    mv = await client.get_namespace_index("http://opcfoundation.org/UA/MachineVision")
    children = await client.nodes.objects.get_children()
    names = [(await n.read_browse_name()).Name for n in children]
    system = children[names.index("VisionSystem")]
    machine = await system.get_child(f"{mv}:VisionStateMachine")
    automatic = await machine.get_child(f"{mv}:AutomaticModeStateMachine")
    recipes = await system.get_child(f"{mv}:RecipeManagement")
    ids = {"system": system.nodeid, "machine": machine.nodeid, "automatic": automatic.nodeid,
           "recipes": recipes.nodeid}  # fmt: skip
    for parent, name in ((machine, "SelectModeAutomatic"), (machine, "Reset"),
                         (machine, "Halt"), (recipes, "PrepareRecipe"),
                         (automatic, "StartSingleJob"), (automatic, "StartContinuous"),
                         (automatic, "Stop"), (automatic, "Abort")):  # fmt: skip
        ids[name] = (await parent.get_child(f"{mv}:{name}")).nodeid
    return mv, ids


CAUSE = (ua.Variant(0, ua.VariantType.Int32), ua.Variant("hostile bench", ua.VariantType.String))


class Plant:
    """The station under attack and an admin session that sets the scene between cases."""

    def __init__(self, endpoint: str, pki: LinePki, root: Path, station: LineStation) -> None:
        self.endpoint, self.pki, self.root, self.station = endpoint, pki, root, station

    async def __aenter__(self) -> Plant:
        self.client = await mes_client(self.endpoint, self.pki)
        await self.client.connect()
        self.mv, self.ids = await node_ids(self.client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    def call(self, parent: str, method: str, *args: Any) -> tuple:
        return (self.ids[parent], self.ids[method], args)

    async def states(self) -> str:
        texts = []
        for key in ("machine", "automatic"):
            node = await self.client.get_node(self.ids[key]).get_child("0:CurrentState")
            texts.append((await node.read_value()).Text or "-")
        return "/".join(texts)

    async def ready(self) -> None:
        """Operational, brick prepared, no job running (waits for a running one)."""
        for _ in range(100):
            state = await self.states()
            if state.endswith("Execution"):
                await asyncio.sleep(0.1)
                continue
            if not state.startswith("Operational"):
                await self._admin("machine", "Reset", *CAUSE)
                await self._admin("machine", "SelectModeAutomatic")
            recipe = (ua.Variant(ua.RecipeIdExternalDataType(Id="brick")),
                      ua.Variant(ua.RecipeIdInternalDataType(Id="")))  # fmt: skip
            await self._admin("recipes", "PrepareRecipe", *recipe)
            return
        raise TimeoutError("the station stayed in a job for 10 s")

    async def _admin(self, parent: str, method: str, *args: Any) -> str:
        request = ua.CallMethodRequest(self.ids[parent], self.ids[method], list(args))
        (result,) = await self.client.uaclient.call([request])
        return result.StatusCode.name

    def user(self, name: str, *calls: tuple, password: str = PASSWORD) -> Attempt:
        return Attempt(self.pki, user=name, password=password, calls=calls)


def verdict_of(steps: dict[str, str]) -> str:
    """``refused at <step> (<status>)`` for the first step not Good, else ``accepted``."""
    for step, status in steps.items():
        if status != "Good":
            return f"refused at {step.split(' ')[0]} ({status})"
    return f"accepted (all {len(steps)} steps Good)"


async def _steps(plant: Plant, plan: Attempt) -> str:
    return verdict_of(await attempt(plant.endpoint, plan))


async def opcua_cases(plant: Plant) -> list[dict[str, str]]:
    """Every OPC 40100 attack, one row each: what it tried and what the station did."""
    p, rows = plant, []

    async def case(name: str, run: Callable[[], Any]) -> None:
        await p.ready()
        try:
            outcome = str(await run())
        except Exception as exc:  # an attack that broke the bench's own client: say so
            outcome = f"bench client failed: {exc!r}"
        rows.append({"case": name, "outcome": outcome})

    halt = p.call("machine", "Halt", *CAUSE)
    single = lambda *a: p.call("automatic", "StartSingleJob", *job_args(*a))  # noqa: E731
    await case("raw SecurityPolicy None channel: CreateSession, anonymous ActivateSession, Halt",
               lambda: _steps(p, Attempt(None, calls=(halt,))))  # fmt: skip
    await case("site-CA client, anonymous token, Halt",
               lambda: _steps(p, Attempt(p.pki, calls=(halt,))))  # fmt: skip
    await case("UserName op-a with a wrong password, Halt",
               lambda: _steps(p, p.user("op-a", halt, password="not the password")))  # fmt: skip
    await case("operator op-a (right password) calls Halt (admin only)",
               lambda: _steps(p, p.user("op-a", halt)))  # fmt: skip
    await case("untrusted certificate, CreateSession without it, anonymous, Halt",
               lambda: _steps(p, Attempt(rogue(p.root), session_certificate=False,
                                         calls=(halt,))))  # fmt: skip
    await case("operator op-b stops op-a's continuous job", lambda: foreign_stop(p))
    await case("StartSingleJob with RecipeId grass (never prepared; brick is)",
               lambda: _steps(p, p.user("op-a", single("h-recipe", "", "grass"))))  # fmt: skip
    await case("StartSingleJob with unknown ProductId gravel",
               lambda: _steps(p, p.user("op-a", single("h-product", "", "", "gravel"))))  # fmt: skip
    await case("Abort in Ready", lambda: abort_in_ready(p))
    await case("Reset in Operational (admin)", lambda: reset_in_operational(p))
    await case("reused MeasId for a new part", lambda: reused_meas_id(p))
    await case("X509 user token whose certificate the site CRL revokes, Halt",
               lambda: revoked_user(p, halt))  # fmt: skip
    await case("observer's SetPublishingMode/ModifySubscription/TransferSubscriptions/"
               "DeleteSubscriptions on the MES's subscription, then 3 jobs",
               lambda: foreign_subscription(p))  # fmt: skip
    await case("ActivateSession of the MES's session from a self-signed channel (token seen "
               "on the wire, op-a's password), then 1 job", lambda: hijack(p))  # fmt: skip
    await case("successful SelectModeAutomatic, PrepareRecipe, StartSingleJob: who is on record",
               lambda: on_record(p))  # fmt: skip
    await case("a job past inspect_timeout_s: the MES fetches the ResultId it was given",
               lambda: timed_out(p))  # fmt: skip
    await case(
        "observer makes up to 1000 subscriptions, then the MES subscribes", lambda: flood(p)
    )  # last: before, the flood outlives its session's connection
    return rows


async def foreign_stop(p: Plant) -> str:
    start = p.call("automatic", "StartContinuous", *job_args("h-cont"))
    started = await attempt(p.endpoint, p.user("op-a", start))
    stop = p.call("automatic", "Stop", *CAUSE)
    foreign = await attempt(p.endpoint, p.user("op-b", stop))
    await attempt(p.endpoint, p.user("op-a", stop))  # the owner ends it
    return f"start {verdict_of(started)}; op-b's Stop {verdict_of(foreign)}"


async def abort_in_ready(p: Plant) -> str:
    steps = await attempt(p.endpoint, p.user("op-a", p.call("automatic", "Abort", *CAUSE)))
    return f"{verdict_of(steps)}; state after: {await p.states()}"


async def reset_in_operational(p: Plant) -> str:
    steps = await attempt(p.endpoint, Attempt(p.pki, x509=True,
                                              calls=(p.call("machine", "Reset", *CAUSE),)))  # fmt: skip
    return f"{verdict_of(steps)}; state after: {await p.states()}"


async def reused_meas_id(p: Plant) -> str:
    """Two jobs with MeasId h-reuse, parts p-1 then p-2: their ResultIds and states."""
    subscription, events = await subscribed(p)
    seen = []
    for part in ("p-1", "p-2"):
        await p.ready()
        job = p.call("automatic", "StartSingleJob", *job_args("h-reuse", part))
        steps = await attempt(p.endpoint, Attempt(p.pki, x509=True, calls=(job,)))
        if verdict_of(steps).startswith("refused"):
            return f"job for {part} {verdict_of(steps)}"
        event = await asyncio.wait_for(events.queue.get(), 30)
        seen.append((event.ResultId.Id, event.ResultState))
    await subscription.delete()
    same = (
        "the same ResultId (old verdict replayed)" if seen[0][0] == seen[1][0] else "new ResultId"
    )
    return f"{same}; ResultStates {[s for _, s in seen]}"


async def jobs(p: Plant, events: Events, prefix: str, count: int) -> tuple[int, int]:
    """``count`` single jobs by the MES: ResultReady events it got, and how many of those name
    another part's MeasId (a wrong verdict)."""
    got = wrong = 0
    for n in range(count):
        await p.ready()
        await p._admin("automatic", "StartSingleJob", *job_args(f"{prefix}-{n}"))
        try:
            event = await asyncio.wait_for(events.queue.get(), 10)
        except TimeoutError:
            continue
        got, wrong = got + 1, wrong + (event.MeasId.Id != f"{prefix}-{n}")
    return got, wrong


async def subscribed(p: Plant, client: Client | None = None) -> tuple[Any, Events]:
    """ResultReady subscribed by the bench's admin session or ``client``."""
    events = Events()
    subscription = await (client or p.client).create_subscription(20, events)
    await subscription.subscribe_events(p.ids["system"], ua.NodeId(RESULT_READY_EVENT, p.mv))
    return subscription, events


def statuses(steps: dict[str, str], names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {steps.get(name, '?')}" for name in names)


async def revoked_user(p: Plant, halt: tuple) -> str:
    p.pki.revoke(p.pki.identity("mes-old", "urn:inspection:mes-old").certificate)
    plan = Attempt(p.pki, x509=True, user_certificate="mes-old", calls=(halt,))
    return await _steps(p, plan)


async def foreign_subscription(p: Plant) -> str:
    subscription, events = await subscribed(p)
    observer = Attempt(p.pki, name="obs-client", user="obs", password=PASSWORD)
    steps = await attempt(p.endpoint, observer, then=on_subscription(subscription.subscription_id))
    names = ("SetPublishingMode", "ModifySubscription", "TransferSubscriptions",
             "DeleteSubscriptions")  # fmt: skip
    got, wrong = await jobs(p, events, "h-sub", 3)
    refused = all(steps.get(n, "Good") != "Good" for n in names)
    with contextlib.suppress(Exception):  # deleted or moved by the attack
        await subscription.delete()
    return (f"{'each refused' if refused else 'accepted'}: {statuses(steps, names)}; "
            f"MES got {got} of 3 ResultReady events, {wrong} wrong verdicts")  # fmt: skip


async def hijack(p: Plant) -> str:
    """The MES (its own client, so the bench's admin session is not the one taken)."""
    client = await mes_client(p.endpoint, p.pki)
    await client.connect()
    try:
        _, events = await subscribed(p, client)
        plan = Attempt(rogue(p.root), user="op-a", password=PASSWORD)
        status = await activate_foreign(p.endpoint, client, plan)
        got, wrong = await jobs(p, events, "h-hijack", 1)
    finally:
        with contextlib.suppress(Exception):  # a session taken over may not close
            await client.disconnect()
    return f"{'refused' if status != 'Good' else 'accepted'} ({status}); MES got {got} of 1 " \
           f"ResultReady events, {wrong} wrong verdicts"  # fmt: skip


async def on_record(p: Plant) -> str:
    """Each call by a user of its own, so the journal's rows are these calls."""
    journal = p.root / "registry" / "control-cam-1.jsonl"
    await p._admin("machine", "Reset", *CAUSE)
    calls = {"SelectModeAutomatic": ("eng", p.call("machine", "SelectModeAutomatic")),
             "PrepareRecipe": ("eng", p.call("recipes", "PrepareRecipe",
                               ua.Variant(ua.RecipeIdExternalDataType(Id="brick")),
                               ua.Variant(ua.RecipeIdInternalDataType(Id="")))),
             "StartSingleJob": ("op-a", p.call("automatic", "StartSingleJob",
                                               *job_args("h-record")))}  # fmt: skip
    for user, call in calls.values():
        await attempt(p.endpoint, p.user(user, call))
    rows = read_jsonl(journal)
    named = [m for m, (user, _) in calls.items()
             if any(r.get("method") == m and r.get("user") == user and r.get("result") == "Good"
                    and r.get("signature") and r.get("peer") for r in rows)]  # fmt: skip
    return f"{len(named)} of 3 named (user, role, peer, arguments, result; signed)"


async def timed_out(p: Plant) -> str:
    """The handler's timeout cut to 1 ms for one job, as a slow part would overrun it."""
    subscription, events = await subscribed(p)
    handler, timeout = p.station.handler, p.station.handler.timeout_s
    handler.timeout_s = 0.001
    try:
        await p.ready()
        await p._admin("automatic", "StartSingleJob", *job_args("h-late"))
        told = await asyncio.wait_for(events.queue.get(), 30)
    finally:
        handler.timeout_s = timeout
    try:
        late = await asyncio.wait_for(events.queue.get(), 10)
        follows = (
            f"ResultState {late.ResultState} under the same id: {late.ResultId == told.ResultId}"
        )
    except TimeoutError:
        follows = "none within 10 s"
    results = await p.client.get_node(p.ids["system"]).get_child(f"{p.mv}:ResultManagement")
    method = await results.get_child(f"{p.mv}:GetResultById")
    arguments = [ua.Variant(told.ResultId), ua.Variant(1000, ua.VariantType.Int32)]
    (fetched,) = await p.client.uaclient.call(
        [ua.CallMethodRequest(results.nodeid, method.nodeid, arguments)]
    )
    state = fetched.OutputArguments[1].Value.ResultState if fetched.StatusCode.is_good() else "-"
    await subscription.delete()
    wrong = int(told.MeasId.Id != "h-late")
    return (f"told ResultState {told.ResultState}; final event: {follows}; GetResultById of "
            f"that id: {fetched.StatusCode.name} (ResultState {state}); {wrong} wrong verdicts")  # fmt: skip


async def flood(p: Plant) -> str:
    observer = Attempt(p.pki, name="obs-client", user="obs", password=PASSWORD)
    steps = await attempt(p.endpoint, observer, then=subscribe_until_refused(1000))
    try:
        mes = await p.client.create_subscription(20, Events())
        await mes.delete()
        mes_status = "Good"
    except ua.UaStatusCodeError as exc:
        mes_status = ua.StatusCode(exc.code).name
    return (
        f"{steps.get('made', '?')} made, then {steps.get('refusal', '?')}; the MES's "
        f"subscribe: {mes_status}"
    )


def sign_only(root: Path) -> dict[str, str]:
    """A station with ``security.mode: sign``: op-a's right password over its Sign channel."""
    built = station(root, mode="sign")
    try:
        pki = LinePki(root / "pki")
        plan = Attempt(pki, user="op-a", password=PASSWORD, mode=ua.MessageSecurityMode.Sign,
                       server_certificate=pki.root / "station-cam-1-server.pem")  # fmt: skip
        steps = asyncio.run(attempt(built.links["machine_vision"].endpoint, plan))
    finally:
        built.stop()
    name = "UserName op-a (right password) over a Sign-only channel (security.mode: sign)"
    return {"case": name, "outcome": verdict_of(steps)}


def markdown(report: dict[str, Any]) -> str:
    before = {
        r["case"]: r["outcome"] + (f" (at {r['commit']})" if "commit" in r else "")
        for r in report.get("before", {}).get("rows", [])
    }
    now = report.get("now", {})
    lines = [
        "# Hostile plant: OPC 40100 server",
        "",
        "Each attack against a running station's VisionSystem (`bench/hostile_opcua.py`; raw",
        "service calls from `bench/_shared.py`: each step sent whatever the one before",
        "answered). *Before*: the code at "
        f"{report.get('before', {}).get('commit', '?')} (the rows added since: the commit "
        f"each names); *now*: {now.get('commit', '?')}.",
        f"Run on {now.get('cpu', '?')}, load {now.get('load', '?')}.",
        "",
        *table(
            ("case", "before", "now"),
            (
                (r["case"], before.get(r["case"], "not run"), r["outcome"])
                for r in now.get("rows", [])
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with recorded() as env, tempfile.TemporaryDirectory(prefix="hostile-opcua-") as scratch:
        root = Path(scratch)
        built = station(root)
        try:
            plant = Plant(built.links["machine_vision"].endpoint, LinePki(root / "pki"), root,
                          built)  # fmt: skip

            async def run() -> list[dict[str, str]]:
                async with plant:
                    return await opcua_cases(plant)

            started = time.perf_counter()
            rows = asyncio.run(run())
        finally:
            built.stop()
        rows.append(sign_only(root / "sign"))
    report = previous_report(OUT, "hostile_opcua")
    report["now"] = {"commit": env["commit"], "rows": rows,
                     "seconds": round(time.perf_counter() - started, 1),
                     "cpu": env["cpu"], "load": env["load_after"]}  # fmt: skip
    save_report(args.out, "hostile_opcua", report, markdown(report))
    for row in rows:
        print(f"{row['case']}: {row['outcome']}")
    if not all(r["outcome"].startswith(EXPECTED) for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
