"End-to-end runs of the similarity study and the correspondences on the bundled COCO sample (classic backbone, CPU)."
import csv, os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import matplotlib; matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from cutler_nb.core import read_json, FailureLog, CutlerError
from cutler_nb.data import sample_dataset, read_coco, write_coco, load_image
from cutler_nb.features import load_backbone
from cutler_nb.similarity import similarity_study, MEASURES, instance_features, compare_measures
from cutler_nb.correspond import correspondences, plot_correspondences
from cutler_nb.viz import save_figure


def _rows(p):
    with open(p) as f: return list(csv.DictReader(f))


@pytest.mark.parametrize("pool", ["image", "instance"])
def test_similarity_study_writes_table_and_figures(tmp_path, pool):
    run = similarity_study(backbone="classic", size=160, pool=pool, run_id="r", root=tmp_path, device="cpu")
    rows = _rows(run/"tables/similarity_measures.csv")
    assert [r["measure"] for r in rows] == list(MEASURES)
    for r in rows:
        assert 0 <= float(r["auc"]) <= 1 and 0 <= float(r["overlap"]) <= 1
        assert int(r["n_same"]) > 0 and int(r["n_diff"]) > 0
    assert (run/"tables/similarity_measures.md").read_text().startswith("| measure |")
    for f in ("similarity_histograms.png", "similarity_separability.png"):
        assert (run/"figures"/f).stat().st_size > 1000
    params = read_json(run/"params.json")
    assert params["params"]["pool"] == pool and params["params"]["backbone"] == "classic"
    gt = read_coco(sample_dataset().annotations)
    n = len({a["image_id"] for a in gt["annotations"] if not a.get("iscrowd")}) if pool == "image" else \
        sum(1 for a in gt["annotations"] if not a.get("iscrowd"))
    feats = torch.load(run/"features.pt", weights_only=False)
    assert feats["feats"].shape == (n, 8)
    # pairs within one image are left out by default
    g = feats["groups"]; cross = sum(int((g[i + 1:] != g[i]).sum()) for i in range(len(g)))
    assert int(rows[0]["n_same"]) + int(rows[0]["n_diff"]) == cross


def test_similarity_study_resumes_and_refuses_other_params(tmp_path):
    run = similarity_study(backbone="classic", size=160, pool="image", run_id="r", root=tmp_path, device="cpu")
    t0 = (run/"features.pt").stat().st_mtime_ns
    similarity_study(backbone="classic", size=160, pool="image", run_id="r", root=tmp_path, device="cpu")
    assert (run/"features.pt").stat().st_mtime_ns == t0
    with pytest.raises(CutlerError, match="different settings"):
        similarity_study(backbone="classic", size=200, pool="image", run_id="r", root=tmp_path, device="cpu")


def test_bad_image_is_logged_and_skipped(tmp_path):
    s = sample_dataset()
    d = read_coco(s.annotations); d["images"] = d["images"][:10]
    keep = {im["id"] for im in d["images"]}
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in keep]
    (tmp_path/"imgs").mkdir()
    for im in d["images"]: (tmp_path/"imgs"/im["file_name"]).write_bytes((s.images/im["file_name"]).read_bytes())
    broken = d["images"][1]["file_name"]
    (tmp_path/"imgs"/broken).write_bytes((s.images/broken).read_bytes()[:500])   # truncated JPEG
    write_coco(d, tmp_path/"gt.json")
    run = similarity_study(tmp_path/"gt.json", tmp_path/"imgs", backbone="classic", size=160, pool="instance",
                           run_id="r", root=tmp_path/"out", device="cpu")
    fails = FailureLog(run/"failures.jsonl").read()
    assert len(fails) == 1 and broken in fails[0]["file"] and "truncated" in fails[0]["reason"]
    assert (run/"tables/similarity_measures.csv").exists()


def test_random_vit_plumbing_and_correspondence_picture(tmp_path):
    s = sample_dataset()
    vit = load_backbone("dino_vits16", pretrained=False, device="cpu")
    d = read_coco(s.annotations); d["images"] = d["images"][1:3]
    f = instance_features(d, s.images, vit, size=160, device="cpu", progress=False)
    assert f.feats.shape[1] == 384 and len(f.feats) == len(f.labels) == len(f.groups)
    assert len(compare_measures(f.feats, f.labels, device="cpu")) == len(MEASURES)
    a, b = s.images/"000000143931.jpg", s.images/"000000463730.jpg"
    c = correspondences(load_backbone("classic", device="cpu"), a, b, k=3, size=240)
    assert len(c) > 0 and (np.diff(c.sim) <= 1e-7).all()
    p = save_figure(plot_correspondences(load_image(a), load_image(b), c, lines=True), tmp_path/"corr.png")
    assert p.stat().st_size > 1000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2000, 768, generator=g); lab = (torch.arange(2000) % 17).numpy()
    from cutler_nb.similarity import pairwise
    for m in MEASURES:
        a, b = pairwise(v[:300], v, measure=m, device="cuda"), pairwise(v[:300], v, measure=m, device="cpu")
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3), m
    tc, tp = compare_measures(v, lab, device="cuda"), compare_measures(v, lab, device="cpu")
    for rc, rp in zip(tc, tp):
        assert rc["n_same"] == rp["n_same"] and abs(rc["auc"] - rp["auc"]) < 1e-3, rc["measure"]
    s = sample_dataset()
    fc = instance_features(s.annotations, s.images, load_backbone("classic", device="cuda"), size=240, device="cuda", progress=False)
    fp = instance_features(s.annotations, s.images, load_backbone("classic", device="cpu"), size=240, device="cpu", progress=False)
    assert fc.feats.device.type == "cpu" and torch.allclose(fc.feats, fp.feats, atol=1e-3)
    a, b = s.images/"000000143931.jpg", s.images/"000000463730.jpg"
    cc = correspondences(load_backbone("classic", device="cuda"), a, b, k=3, size=240)
    cp = correspondences(load_backbone("classic", device="cpu"), a, b, k=3, size=240)
    assert len(cc.pairs() ^ cp.pairs()) <= 0.02 * len(cp) and (cc.fg_a == cp.fg_a).mean() > 0.99
    vit = load_backbone("dino_vits16", pretrained=False, device="cuda")
    cv = correspondences(vit, a, b, k=2, size=224)
    assert len(cv) > 0


def test_one_name_one_meaning():
    """Issue 14: a name exported by two modules means one thing. `ncut.cosine_similarity` (features -> patch affinity)
    and the pairwise measure `similarity.cosine` are distinct; `ncut`'s logger is private; `overlap._coco_and_path` says what it returns."""
    from cutler_nb import ncut, similarity, overlap
    assert "cosine_similarity" not in similarity.__all__ and not hasattr(similarity, "cosine_similarity")
    assert MEASURES["cosine"].fn is similarity.cosine and "cosine" in similarity.__all__
    a = torch.tensor([[3., 4], [4, 3]])
    assert torch.allclose(similarity.cosine(a, a), ncut.cosine_similarity(a, channels_first=False))   # same numbers, two signatures
    assert "log" not in ncut.__all__ and not hasattr(ncut, "log")
    assert not hasattr(overlap, "_as_coco") and overlap._coco_and_path({"images": []}) == ({"images": []}, None)
