"""Probe (#69): FP32 vs INT8 output of every convolution, add and pooling of a PatchCore version on its test images; saves both graphs to /tmp/int8probe for simulated.py and variants.py. Run: python bench/int8_probe/layers.py brick v0001."""
from __future__ import annotations
import json, sys, time
from pathlib import Path
import numpy as np
import openvino as ov
sys.path.insert(0, "/work/main")
from inspection.core.registry import Registry
from inspection.core.images import read_image
from inspection.data.dataset import load_dataset
from inspection.runtime.preprocess import preprocess
from inspection.training.convert import convert_torch_model
from inspection.training.registry_export import export_splits
from inspection.training.train import load_trained_model
from inspection.training.quantize import quantize_int8

product, version = sys.argv[1], sys.argv[2]
reg = Registry("/work/main/var/registry")
rec = reg.version(product, version)
ds = load_dataset(rec.dataset_root())
splits = export_splits(rec, ds)
prep = rec.preprocessing()
torch_model = load_trained_model(rec).model
fp32 = convert_torch_model(torch_model, prep.input_size)
bits = prep.source_bits
cal = [preprocess(read_image(p, bits=bits), prep) for p in sorted(splits.train_images)[:64]]
t = time.time(); int8 = quantize_int8(fp32.clone(), cal); print("quantize s", time.time() - t)
ov.save_model(int8, f"/tmp/int8probe/{product}-{version}-int8.xml", compress_to_fp16=False)
ov.save_model(fp32, f"/tmp/int8probe/{product}-{version}-fp32.xml", compress_to_fp16=False)
test = list(splits.test)
x = np.stack([preprocess(read_image(s.path, bits=bits), prep) for s in test])
labels = np.array([s.label for s in test]); kinds = [s.defect_type for s in test]

def node_names(model):
    return {op.get_friendly_name(): op for op in model.get_ordered_ops()}
f_ops, i_ops = node_names(fp32), node_names(int8)
probe_types = {"Convolution", "GroupConvolution", "Clamp", "Add", "Relu", "Multiply", "AvgPool"}
common = [n for n, op in f_ops.items() if op.get_type_name() in probe_types and n in i_ops
          and not n.startswith("__module.model.anomaly_map_generator")]
def with_outputs(model, ops):
    m = model.clone()
    byname = {op.get_friendly_name(): op for op in m.get_ordered_ops()}
    for n in common:
        m.add_outputs(byname[n].output(0))
    return m
core = ov.Core()
cfg = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
cf = core.compile_model(with_outputs(fp32, f_ops), "CPU", cfg)
ci = core.compile_model(with_outputs(int8, i_ops), "CPU", cfg)
errs = {n: [] for n in common}; sf, si, mf, mi = [], [], [], []
for k in range(len(x)):
    rf, ri = cf(x[k:k+1]), ci(x[k:k+1])
    outs_f = list(rf.values()); outs_i = list(ri.values())
    sf.append(float(np.ravel(outs_f[0])[0])); si.append(float(np.ravel(outs_i[0])[0]))
    mf.append(outs_f[1][0, 0]); mi.append(outs_i[1][0, 0])
    for j, n in enumerate(common):
        a, b = outs_f[2 + j], outs_i[2 + j]
        errs[n].append(float(np.linalg.norm(b - a) / (np.linalg.norm(a) + 1e-12)))
sf, si = np.array(sf), np.array(si)
print("layer relative L2 error INT8 vs FP32 (median over test images, then max):")
rows = []
for n in common:
    rows.append((n, f_ops[n].get_type_name(), float(np.median(errs[n])), float(np.max(errs[n]))))
for r in rows:
    print(f"{r[2]:.4f} {r[3]:.4f} {r[1]:16s} {r[0]}")
print("score: label kind fp32 int8 diff")
for s, l, k, a, b in zip(test, labels, kinds, sf, si):
    print(f"{l} {k:10s} {a:8.3f} {b:8.3f} {b-a:+.3f} {Path(s.path).name}")
mf, mi = np.array(mf), np.array(mi)
print("map rel err median", np.median(np.linalg.norm((mi-mf).reshape(len(x),-1),axis=1)/np.linalg.norm(mf.reshape(len(x),-1),axis=1)))
json.dump({"layers": rows, "scores_fp32": sf.tolist(), "scores_int8": si.tolist(), "labels": labels.tolist(), "kinds": kinds,
           "names": [Path(s.path).name for s in test]}, open(f"/tmp/int8probe/{product}-{version}.json", "w"), indent=1)
