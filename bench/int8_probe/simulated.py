"""Probe (#69): FP32 vs INT8 on this CPU's kernels vs INT8 with low-precision transformations off (exact integer arithmetic, as VNNI/AMX). After layers.py."""
import json, sys, numpy as np, openvino as ov
sys.path.insert(0, "/work/main")
from inspection.core.registry import Registry
from inspection.core.images import read_image
from inspection.data.dataset import load_dataset
from inspection.runtime.preprocess import preprocess
from inspection.training.registry_export import export_splits
p, v = sys.argv[1], sys.argv[2]
rec = Registry("/work/main/var/registry").version(p, v)
splits = export_splits(rec, load_dataset(rec.dataset_root())); prep = rec.preprocessing()
x = np.stack([preprocess(read_image(s.path, bits=prep.source_bits), prep) for s in splits.test])
core = ov.Core()
POOL = ["__module.model.feature_pooler/aten::avg_pool2d/AvgPool", "__module.model.feature_pooler/aten::avg_pool2d/AvgPool_1"]
def run(name, props):
    m = core.read_model(f"/tmp/int8probe/{p}-{v}-{name}.xml")
    ops = {o.get_friendly_name(): o for o in m.get_ordered_ops()}
    pools = [n for n in POOL if n in ops]
    for n in pools: m.add_outputs(ops[n].output(0))
    c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2, **props})
    s, f = [], []
    for k in range(len(x)):
        r = list(c(x[k:k+1]).values()); s.append(float(np.ravel(r[0])[0])); f.append([a[0] for a in r[2:]])
    return np.array(s), f
sf, ff = run("fp32", {}); si, fi = run("int8", {}); ss, fs = run("int8", {"LP_TRANSFORMS_MODE": False})
def rel(a, b): return np.median([np.linalg.norm(bb[j]-aa[j])/np.linalg.norm(aa[j]) for aa, bb in zip(a, b) for j in range(len(aa))])
print("pooled features rel err: int8-kernels vs fp32 %.4f, int8-simulated vs fp32 %.4f, kernels vs simulated %.4f" % (rel(ff, fi), rel(ff, fs), rel(fs, fi)))
print("score |diff| max: kernels vs fp32 %.3f, simulated vs fp32 %.3f, kernels vs simulated %.3f" % (np.abs(si-sf).max(), np.abs(ss-sf).max(), np.abs(si-ss).max()))
for s, a, b, c in zip(splits.test, sf, si, ss): print(s.label, s.defect_type, round(a,3), round(b,3), round(c,3))
