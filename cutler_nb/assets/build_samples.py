"""Provenance: how the bundled COCO samples were assembled (run once by the developers, from the
workplace's `shared/data` copies; users never need to run it).

Sources (byte-for-byte copies, see ATTRIBUTION.md):
- super-gradients `tests/data/tinycoco` (Apache-2.0 repo). Its split names are swapped: the folder
  and JSON called *train2017* hold 32 COCO **val2017** photos, those called *val2017* hold 6 COCO
  **train2017** photos (each image's `coco_url` says which).
- clarifai-python `clarifai/data_upload/examples/image_segmentation/coco` (10 val2017 photos).
"""
import json, shutil, sys
from pathlib import Path

def _load(p): return json.loads(Path(p).read_text())

def build(shared: Path, out: Path):
    tiny, clar = shared/'super-gradients-tinycoco', shared/'clarifai-coco-val2017-subset'
    parts = {'coco_val_mini': [(tiny/'annotations/instances_train2017.json', tiny/'images/train2017'),
                               (clar/'annotations/instances_val2017_subset.json', clar/'images')],
             'coco_train_mini': [(tiny/'annotations/instances_val2017.json', tiny/'images/val2017')]}
    tiny_c = 'the test data of Deci-AI/super-gradients (`tests/data/tinycoco`, Apache-2.0 repository)'
    credits = {'coco_val_mini': tiny_c + ' and the example data of Clarifai/clarifai-python (commit 75ba56f, Apache-2.0 repository)',
               'coco_train_mini': tiny_c}
    split_of = {'coco_val_mini': 'val2017', 'coco_train_mini': 'train2017'}
    for name, srcs in parts.items():
        dst = out/name; (dst/'images').mkdir(parents=True, exist_ok=True)
        merged = None; seen = set()
        for js, imgs in srcs:
            d = _load(js)
            for im in d['images']:
                assert split_of[name] in im['coco_url'], (name, im['coco_url'])
                if im['id'] in seen: raise SystemExit(f'duplicate image {im["id"]} across sources')
                seen.add(im['id'])
                shutil.copyfile(imgs/im['file_name'], dst/'images'/im['file_name'])
            if merged is None: merged = d
            else:
                assert d['categories'] == merged['categories'] and d['licenses'] == merged['licenses']
                merged['images'] += d['images']; merged['annotations'] += d['annotations']
        merged['images'].sort(key=lambda i: i['id']); merged['annotations'].sort(key=lambda a: a['id'])
        merged['info'] = dict(merged['info'], description=f'COCO 2017 {split_of[name]} sample bundled with cutler_nb '
                              '(genuine COCO images and instance annotations; see ATTRIBUTION.md)')
        (dst/'annotations.json').write_text(json.dumps(merged))
        lic = {l['id']: l for l in merged['licenses']}
        rows = [f"| {im['file_name']} | {lic[im['license']]['name']} ({lic[im['license']]['url']}) | {im['flickr_url']} |"
                for im in merged['images']]
        (dst/'ATTRIBUTION.md').write_text(
            f"# {name}: attribution\n\n{len(merged['images'])} photographs from COCO 2017 {split_of[name]} "
            "(https://cocodataset.org) with their genuine instance annotations.\n\n"
            "- Annotations: COCO Consortium, CC BY 4.0 (https://cocodataset.org/#termsofuse).\n"
            "- Photographs: each under the Flickr licence named below (from the `license` field of its entry "
            "in `annotations.json`); authors are credited through the Flickr page.\n"
            f"- Copied byte-for-byte from {credits[name]}; neither project changes the COCO files.\n\n| file | licence | source photo |\n|---|---|---|\n"
            + '\n'.join(rows) + '\n')

if __name__ == '__main__': build(Path(sys.argv[1]), Path(sys.argv[2]))
