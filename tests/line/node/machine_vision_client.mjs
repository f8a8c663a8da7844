// An independent OPC 40100 client (node-opcua) for tests/line/test_machine_vision.py.
//
//   node machine_vision_client.mjs '<JSON options>'
//
// Options: endpoint, pki (its own PKI folder), ca and crl (the site CA's certificate and its
// CRL, both DER, as the line PKI publishes them), flow (true: run a job; false: only probe),
// certificate, privateKey, uri (its certificate signed by the site CA; none: a self-signed one
// node-opcua makes itself), user and password (a UserName token; none: anonymous).
// flow: browse to the VisionSystem, select automatic mode, prepare the recipe "brick",
// subscribe to ResultReady events, start a single job, wait for its event, read the result
// with GetResultById, print one JSON line. probe: open a session, read the server state and
// print whether the station let it in. attack (a subscription id of another session): each
// subscription service on it (SetPublishingMode off, ModifySubscription, TransferSubscriptions,
// DeleteSubscriptions) and its status. conformance (test_machine_vision_conformance.py): as
// flow, with two single jobs, reporting the DataType each output argument, event field and
// result field arrived as, then the state machine's answers (Reset, Halt, mode selection,
// a job, a mistyped argument) and what survives a Halt. node-opcua checks revocation: a CA
// without its CRL fails (BadCertificateRevocationUnknown).
import { readFileSync } from "node:fs";
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  NodeId,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  UserTokenType,
  VariantArrayType,
  constructEventFilter,
} from "node-opcua";

const MV_URI = "http://opcfoundation.org/UA/MachineVision";
const options = JSON.parse(process.argv[2]);
const identity = options.user
  ? { type: UserTokenType.UserName, userName: options.user, password: options.password }
  : { type: UserTokenType.Anonymous };

const certificateManager = new OPCUACertificateManager({
  rootFolder: options.pki,
  automaticallyAcceptUnknownCertificate: false,
});
await certificateManager.initialize();
const ca = readFileSync(options.ca);
await certificateManager.trustCertificate(ca);
await certificateManager.addIssuer(ca);
await certificateManager.addRevocationList(readFileSync(options.crl));
const client = OPCUAClient.create({
  applicationName: "node-opcua MES",
  applicationUri: options.uri || "urn:inspection:node-opcua-untrusted",
  securityMode: MessageSecurityMode.SignAndEncrypt,
  securityPolicy: SecurityPolicy.Basic256Sha256,
  clientCertificateManager: certificateManager,
  ...(options.certificate
    ? { certificateFile: options.certificate, privateKeyFile: options.privateKey }
    : {}),
  endpointMustExist: false,
  connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
});

function done(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function probe() {
  try {
    await client.connect(options.endpoint);
    const session = await client.createSession(identity);
    await session.read({ nodeId: "ns=0;i=2259", attributeId: AttributeIds.Value });
    await session.close();
    return { connected: true };
  } catch (error) {
    return { connected: false, error: String(error.message || error) };
  } finally {
    await client.disconnect();
  }
}

function statusOf(result) {
  const first = [result].flat().find((s) => s.name !== "Good");
  return first ? first.name : "Good";
}

async function attempted(step) {
  try {
    return statusOf(await step());
  } catch (error) {
    const found = String(error.message || error).match(/Bad[A-Za-z]+/);
    return found ? found[0] : String(error.message || error);
  }
}

async function attack() {
  await client.connect(options.endpoint);
  const session = await client.createSession(identity);
  const ids = [options.attack];
  try {
    return {
      SetPublishingMode: await attempted(() => session.setPublishingMode(false, ids)),
      ModifySubscription: await attempted(async () => {
        const response = await session.modifySubscription({
          subscriptionId: options.attack,
          requestedPublishingInterval: 60000,
        });
        return response.responseHeader.serviceResult;
      }),
      TransferSubscriptions: await attempted(async () => {
        const response = await session.transferSubscriptions({ subscriptionIds: ids });
        return response.results.map((r) => r.statusCode);
      }),
      DeleteSubscriptions: await attempted(async () => {
        const response = await session.deleteSubscriptions({ subscriptionIds: ids });
        return response.results;
      }),
    };
  } finally {
    await session.close();
    await client.disconnect();
  }
}

// "MV:3002" / "UA:6": the DataType a value arrived as (an undecoded structure: "opaque:" and
// its encoding), namespaces by URI so the test compares them with the NodeSet's.
function typeOf(variant, mv) {
  const named = (nodeId) => `${nodeId.namespace === mv ? "MV" : nodeId.namespace ? "?" : "UA"}:${nodeId.value}`;
  if (variant.dataType !== DataType.ExtensionObject) return named({ namespace: 0, value: variant.dataType });
  const value = [variant.value].flat()[0];
  if (!value) return "null";
  if (!value.schema || value.constructor.name === "OpaqueStructure") return `opaque:${value.nodeId}`;
  return named(value.schema.dataTypeNodeId);
}

// The session's Machine Vision namespace, its numeric NodeIds, a child-by-browse-name lookup,
// the one VisionSystemType object under Objects with its state machines and managements, and
// a structure of one of the namespace's DataTypes as a call argument.
async function visionSystem(session) {
  const namespaces = await session.readNamespaceArray();
  const mv = namespaces.indexOf(MV_URI);
  const id = (value) => new NodeId(NodeId.NodeIdType.NUMERIC, value, mv);
  const child = async (parent, name) => {
    const browsed = await session.browse(parent);
    const found = browsed.references.find(
      (r) => r.browseName.name === name && r.browseName.namespaceIndex === mv,
    );
    if (!found) throw new Error(`${parent.toString()} has no ${mv}:${name}`);
    return found.nodeId;
  };
  const objects = await session.browse("ns=0;i=85");
  const systems = objects.references.filter(
    (r) => r.typeDefinition.toString() === id(1003).toString(),
  );
  if (systems.length !== 1) throw new Error(`${systems.length} VisionSystemType objects`);
  const system = systems[0].nodeId;
  const machine = await child(system, "VisionStateMachine");
  const struct = async (type, fields) => ({
    dataType: DataType.ExtensionObject,
    value: await session.constructExtensionObject(id(type), fields),
  });
  return {
    mv, id, child, system, machine, struct,
    automatic: await child(machine, "AutomaticModeStateMachine"),
    recipes: await child(system, "RecipeManagement"),
    results: await child(system, "ResultManagement"),
  };
}

async function conformance() {
  await client.connect(options.endpoint);
  const session = await client.createSession(identity);
  try {
    const { mv, child, system, machine, automatic, recipes, results, struct } =
      await visionSystem(session);
    const outputs = {};
    const call = async (object, method, inputArguments = []) => {
      const result = await session.call({
        objectId: object,
        methodId: await child(object, method),
        inputArguments,
      });
      if (result.statusCode.name === "Good") {
        outputs[method] = result.outputArguments.map((v) => typeOf(v, mv));
      }
      return { status: result.statusCode.name, values: result.outputArguments.map((v) => v.value) };
    };
    const state = async () => {
      const current = async (m) => {
        const browsed = await session.browse(m);
        const node = browsed.references.find((r) => r.browseName.name === "CurrentState").nodeId;
        const read = await session.read({ nodeId: node, attributeId: AttributeIds.Value });
        return read.value.value.text || "";
      };
      return [await current(machine), await current(automatic)];
    };
    const cause = [
      { dataType: DataType.Int32, value: 0 },
      { dataType: DataType.String, value: "node-opcua" },
    ];
    const job = async (meas) => [
      await struct(3015, { id: meas }),
      await struct(3004, { id: "node-part" }),
      await struct(3002, { id: "" }),
      await struct(3003, { id: "" }),
      { dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [] },
    ];

    await call(machine, "SelectModeAutomatic");
    await call(recipes, "PrepareRecipe", [await struct(3002, { id: "brick" }), await struct(3013, { id: "" })]);
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 20,
      requestedMaxKeepAliveCount: 20,
      publishingEnabled: true,
    });
    const names = options.fields;
    // awaited: the server has the item before the first job (a job started earlier, while a
    // busy machine still creates it, raises its ResultReady event to nobody)
    const item = await subscription.monitor(
      { nodeId: system, attributeId: AttributeIds.EventNotifier },
      { queueSize: 10, filter: constructEventFilter(names.map((n) => `${mv}:${n}`)) },
      TimestampsToReturn.Neither,
    );
    const events = [];
    item.on("changed", (values) => events.push(values));
    const seen = [];
    for (const meas of ["k-1", "k-2"]) {  // the second: the camera is out of images
      await call(automatic, "StartSingleJob", await job(meas));
      for (let i = 0; i < 300 && events.length < seen.length + 1; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const event = events[seen.length];
      if (!event) throw new Error(`no ResultReady event for ${meas}`);
      const resultId = event[names.indexOf("ResultId")].value.id;
      const got = await call(results, "GetResultById", [
        await struct(3021, { id: resultId }),
        { dataType: DataType.Int32, value: 1000 },
      ]);
      const result = got.values[1];
      seen.push({
        resultId,
        resultState: result.resultState,
        partId: result.partId.id,
        content: result.resultContent[0].value,
        fields: Object.fromEntries(
          ["resultId", "measId", "partId", "externalRecipeId", "internalRecipeId", "productId",
            "internalConfigurationId", "jobId", "processingTimes"]
            .map((f) => [f, result[f]?.schema ? typeOf({ dataType: DataType.ExtensionObject, value: result[f] }, mv) : "missing"]),
        ),
      });
      for (let i = 0; i < 100 && (await state())[1] !== "Ready"; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await subscription.terminate();
    const eventTypes = Object.fromEntries(names.map((n, i) => [n, typeOf(events[0][i], mv)]));

    // the state machine: each call's status and the states after it
    const machineSteps = [];
    const step = async (label, object, method, args = []) => {
      const { status } = await call(object, method, args);
      machineSteps.push([label, status, ...(await state())]);
    };
    const mistyped = await job("m-typed");
    mistyped[0] = { dataType: DataType.String, value: "m-typed" };  // a MeasId as a String
    await step("StartSingleJob, MeasId a String", automatic, "StartSingleJob", mistyped);
    await step("Reset", machine, "Reset", cause);
    await step("Reset again", machine, "Reset", cause);
    await step("PrepareRecipe preoperational", recipes, "PrepareRecipe", [await struct(3002, { id: "brick" }), await struct(3013, { id: "" })]);
    await step("SelectModeAutomatic", machine, "SelectModeAutomatic");
    await step("StartSingleJob unprepared", automatic, "StartSingleJob", await job("m-3"));
    await step("PrepareRecipe", recipes, "PrepareRecipe", [await struct(3002, { id: "brick" }), await struct(3013, { id: "" })]);
    await step("Halt", machine, "Halt", cause);
    await step("Halt again", machine, "Halt", cause);
    await step("SelectModeAutomatic halted", machine, "SelectModeAutomatic");
    await step("PrepareRecipe halted", recipes, "PrepareRecipe", [await struct(3002, { id: "brick" }), await struct(3013, { id: "" })]);
    await step("GetResultById halted", results, "GetResultById", [
      await struct(3021, { id: seen[0].resultId }),
      { dataType: DataType.Int32, value: 1000 },
    ]);
    await step("Reset halted", machine, "Reset", cause);
    await step("SelectModeAutomatic after", machine, "SelectModeAutomatic");
    return { outputs, events: eventTypes, results: seen, machine: machineSteps };
  } finally {
    await session.close();
    await client.disconnect();
  }
}

async function flow() {
  await client.connect(options.endpoint);
  const session = await client.createSession(identity);
  try {
    const { mv, child, system, machine, automatic, recipes, results, struct } =
      await visionSystem(session);
    const call = async (object, method, inputArguments = []) => {
      const result = await session.call({
        objectId: object,
        methodId: await child(object, method),
        inputArguments,
      });
      if (result.statusCode.isNot && result.statusCode.name !== "Good") {
        throw new Error(`${method}: ${result.statusCode.name}`);
      }
      return result.outputArguments.map((v) => v.value);
    };

    await call(machine, "SelectModeAutomatic");
    const [internal, completed] = await call(recipes, "PrepareRecipe", [
      await struct(3002, { id: "brick" }),
      await struct(3013, { id: "" }),
    ]);

    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 20,
      requestedMaxKeepAliveCount: 20,
      publishingEnabled: true,
    });
    const fields = ["EventType", `${mv}:ResultId`, `${mv}:ResultState`, `${mv}:JobId`];
    const item = await subscription.monitor(  // created on the server before the job starts
      { nodeId: system, attributeId: AttributeIds.EventNotifier },
      { queueSize: 10, filter: constructEventFilter(fields) },
      TimestampsToReturn.Neither,
    );
    const event = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no ResultReady event in 30 s")), 30000);
      item.on("changed", (values) => {
        clearTimeout(timer);
        resolve(values.map((v) => v.value));
      });
    });
    const [job] = await call(automatic, "StartSingleJob", [
      await struct(3015, { id: "n-1" }),
      await struct(3004, { id: "node-part" }),
      await struct(3002, { id: "" }),
      await struct(3003, { id: "" }),
      { dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [] },
    ]);
    const [eventType, resultId, resultState, eventJob] = await event;
    const [, result] = await call(results, "GetResultById", [
      await struct(3021, { id: resultId.id }),
      { dataType: DataType.Int32, value: 1000 },
    ]);
    await subscription.terminate();
    return {
      recipe: { id: internal.id, version: internal.version, completed },
      job: job.id,
      event: {
        type: eventType.toString(),
        resultId: resultId.id,
        resultState,
        jobId: eventJob.id,
      },
      result: {
        resultId: result.resultId.id,
        resultState: result.resultState,
        measId: result.measId.id,
        content: result.resultContent[0].value,
      },
    };
  } finally {
    await session.close();
    await client.disconnect();
  }
}

try {
  const run = options.attack ? attack : options.conformance ? conformance : options.flow ? flow : probe;
  done(await run());
  process.exit(0);
} catch (error) {
  done({ error: String(error.stack || error) });
  process.exit(1);
}
