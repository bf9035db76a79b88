"""`sail_vl_nb.towers` is a package of modules (one notebook each, nbs/09*_towers*.ipynb); its `__init__` must keep
every name the single module had, each defined once, and still find the shipped towers."""
import importlib, subprocess, sys
from pathlib import Path

import sail_vl_nb.towers as towers

MODULES = ("build", "recipes", "vision", "probes", "lm", "shipping", "alignment")
# `sail_vl_nb.towers.__all__` when the towers were one module (sail_vl_nb/towers.py, nbs/09_towers.ipynb)
OLD_ALL = ['TWIN_CHANGES', 'CELL_CLASSES', 'DENSE_TEXTS', 'MAX_BARS', 'RECIPES', 'PROBES', 'SHIP_DTYPE', 'towers_dir',
           'pretrained_towers', 'build_model', 'processor_for', 'pixels_u8', 'normalize_pixels', 'vision_features',
           'twin', 'contrastive_scenes', 'BagOfWords', 'SigLIPPretrainer', 'dense_targets', 'DenseHeads',
           'VisionRecipe', 'LMRecipe', 'pretrain_vision', 'probe_set', 'linear_probe', 'probe_accuracies',
           'template_sentences', 'lm_documents', 'pack_documents', 'perplexity', 'lm_corpus', 'pretrain_lm',
           'reading_accuracy', 'save_towers', 'build_towers', 'alignment_samples', 'alignment_run']
NEW = ['get_processor', 'BINDING', 'binding_probe_set', 'binding_accuracies', 'packed_batches', 'caption_visibility',
       'reading_document', 'pad_rows', 'stream_batches', 'twin_documents']


def test_old_names_are_reexported():
    assert sorted(towers.__all__) == sorted(OLD_ALL + NEW)
    missing = [n for n in OLD_ALL + NEW if not hasattr(towers, n)]
    assert not missing, missing


def test_each_name_defined_in_one_module():
    mods = {m: importlib.import_module(f"sail_vl_nb.towers.{m}") for m in MODULES}
    names = [n for mod in mods.values() for n in mod.__all__]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    assert sorted(names) == sorted(towers.__all__)
    for m, mod in mods.items():
        for n in mod.__all__: assert getattr(towers, n) is getattr(mod, n), (m, n)


def test_shipped_towers_are_found():
    package = Path(towers.__file__).parent.parent                     # sail_vl_nb/
    for scale in ("tiny", "small"):
        assert towers.towers_dir(scale).resolve() == (package / "assets" / "towers" / scale).resolve()
        assert (towers.towers_dir(scale) / "meta.json").exists()
    from sail_vl_nb.towers.shipping import _build_part                # what build_towers' spawned workers import
    assert callable(_build_part)


def test_no_stale_module_and_no_import_cycle():
    assert not (Path(towers.__file__).parent.parent / "towers.py").exists(), "sail_vl_nb/towers.py is left over from before the split"
    for m in MODULES:                                   # each module imported first, in a fresh interpreter
        out = subprocess.run([sys.executable, "-c", f"import sail_vl_nb.towers.{m}"], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, (m, out.stderr[-1500:])
