"""Probe (#69): INT8 variants (ignored scopes, preset, bias correction) against FP32 on the test images. After layers.py: python bench/int8_probe/variants.py brick v0001 base,stem,dw1,stem2,dw."""
import sys, time, numpy as np, openvino as ov
sys.path.insert(0, "/work/main")
from inspection.core.registry import Registry
from inspection.core.images import read_image
from inspection.data.dataset import load_dataset
from inspection.runtime.preprocess import preprocess
from inspection.training.registry_export import export_splits
from inspection.training.quantize import import_nncf, distance_head
nncf = import_nncf()
p, v = sys.argv[1], sys.argv[2]; which = sys.argv[3].split(",")
rec = Registry("/work/main/var/registry").version(p, v)
splits = export_splits(rec, load_dataset(rec.dataset_root())); prep = rec.preprocessing(); bits = prep.source_bits
x = np.stack([preprocess(read_image(s.path, bits=bits), prep) for s in splits.test])
labels = np.array([s.label for s in splits.test])
cal = [preprocess(read_image(q, bits=bits), prep) for q in sorted(splits.train_images)[:64]]
core = ov.Core(); fp32 = core.read_model(f"/tmp/int8probe/{p}-{v}-fp32.xml")
def scores(m):
    c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2})
    return np.array([float(np.ravel(c(x[k:k+1])[c.output(0)])[0]) for k in range(len(x))])
sf = scores(fp32)
convs = [o.get_friendly_name() for o in fp32.get_ordered_ops() if o.get_type_name() in ("Convolution", "GroupConvolution") and "anomaly_map" not in o.get_friendly_name()]
def variant(name):
    head = distance_head(fp32); extra = []; preset = None; adv = dict(overflow_fix=nncf.OverflowFix.ENABLE); kw = {}
    types = []
    if "stem" in name: extra += convs[:1]
    if "first3" in name: extra += convs[:3]
    if "last" in name: extra += convs[-1:]
    if "dw1" in name: extra += convs[1:2]
    if "stem2" in name: extra += convs[:2]
    if name.startswith("dw") and "dw1" not in name: types = ["GroupConvolution"]
    if "mixed" in name: preset = nncf.QuantizationPreset.MIXED
    if "nofbc" in name: kw["fast_bias_correction"] = False
    if "sq" in name: adv["smooth_quant_alphas"] = nncf.AdvancedSmoothQuantParameters(convolution=0.15, matmul=-1); kw["model_type"] = nncf.ModelType.TRANSFORMER
    if "fp32" == name: return fp32
    scope = nncf.IgnoredScope(names=head + extra, types=types, validate=False)
    return nncf.quantize(fp32, nncf.Dataset(cal, lambda i: i[None]), subset_size=len(cal), ignored_scope=scope, preset=preset,
                         advanced_parameters=nncf.AdvancedQuantizationParameters(**adv), **kw)
for name in which:
    t = time.time(); m = variant(name); q = time.time() - t
    c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 2}); import time as T
    for _ in range(5): c(x[:1])
    ts = []
    for _ in range(40): t0 = T.perf_counter(); c(x[:1]); ts.append(T.perf_counter() - t0)
    print(name, "p50 ms %.2f" % (1000 * np.median(ts)), flush=True)
    si = scores(m); good = labels == 0
    gd = si[good] - sf[good]
    print(f"{name:22s} quant {q:4.1f}s good diff max {np.abs(gd).max():.3f} mean {gd.mean():+.3f} | defect diff mean {np.mean(si[~good]-sf[~good]):+.3f} min {np.min(si[~good]-sf[~good]):+.3f} | margin minNG-maxOK fp32 {sf[~good].min()-sf[good].max():.3f} int8 {si[~good].min()-si[good].max():.3f} | 2nd-lowest NG {np.sort(si[~good])[1]-si[good].max():.3f}", flush=True)
