"""`sail_vl_nb.world` and `sail_vl_nb.text` are packages of modules (one notebook each, nbs/03*_world*.ipynb and
nbs/04*_text*.ipynb); each `__init__` must keep every name its single module had, each defined once."""
import importlib, subprocess, sys
from pathlib import Path

import pytest

PACKAGES = {
    "world": ("scene", "render", "captions", "questions", "records"),
    "text": ("tokenizer", "processor", "generation", "checkpoint"),
}
# `__all__` of sail_vl_nb/world.py and sail_vl_nb/text.py when each was one module (nbs/03_world.ipynb, nbs/04_text.ipynb)
OLD_ALL = {
    "world": ['COLORS', 'SHAPES', 'SIZES', 'BACKGROUNDS', 'PATTERNS', 'WORDS', 'KINDS', 'CATEGORIES', 'ALT_NOISES',
              'SIDES', 'NUM_WORDS', 'ROW_NAMES', 'COL_NAMES', 'pos_name', 'Obj', 'Bar', 'Scene', 'load_scene',
              'sample_scene', 'render_scene', 'applicable_noises', 'sample_noise', 'alt_text', 'objects_in_text',
              'reference_caption', 'make_questions', 'world_features', 'make_record', 'png_bytes', 'make_world',
              'image_digest', 'show_gallery', 'write_records', 'read_records'],
    "text": ['SPECIAL_TOKENS', 'IMAGE_TAG', 'CHATML_TEMPLATE', 'GENERAL_MODULES', 'REQUIRED_TOKENS', 'ROLES',
             'train_tokenizer', 'general_text', 'world_text', 'shipped_tokenizer_dir', 'default_tokenizer',
             'load_tokenizer', 'load_image', 'SailVLProcessor', 'show_sample', 'expected_labels', 'batch_chat', 'chat',
             'overfit_one', 'official_to_ours', 'ours_to_official', 'official_config', 'config_from_official',
             'load_official_checkpoint'],
}


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_old_names_are_reexported(pkg):
    mod = importlib.import_module(f"sail_vl_nb.{pkg}")
    assert sorted(mod.__all__) == sorted(OLD_ALL[pkg])
    missing = [n for n in OLD_ALL[pkg] if not hasattr(mod, n)]
    assert not missing, missing


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_each_name_defined_in_one_module(pkg):
    package = importlib.import_module(f"sail_vl_nb.{pkg}")
    mods = {m: importlib.import_module(f"sail_vl_nb.{pkg}.{m}") for m in PACKAGES[pkg]}
    names = [n for mod in mods.values() for n in mod.__all__]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    assert sorted(names) == sorted(package.__all__)
    for m, mod in mods.items():
        assert not hasattr(mod, "__path__") and getattr(package, m) is mod, m   # no public name shadows a module
        for n in mod.__all__: assert getattr(package, n) is getattr(mod, n), (m, n)


def test_patched_methods_stay_on_their_class():
    "Some methods are added to their class in a later notebook cell (`@patch`); each class must end up with all of them."
    from sail_vl_nb.text import SailVLProcessor
    from sail_vl_nb.world import Scene
    for name in ("from_config", "from_pretrained", "_enc", "_check", "_prepare", "_assemble", "encode", "encode_batch",
                 "__call__", "decode", "save_pretrained"):
        assert name in vars(SailVLProcessor), name
    assert isinstance(vars(SailVLProcessor)["from_pretrained"], classmethod)
    assert "validate" in vars(Scene)
    with pytest.raises(ValueError, match="share a cell"):
        Scene.from_dict({"objects": [dict(shape="circle", color="red", size="large", row=0, col=0)] * 2})


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_no_stale_module_and_no_import_cycle(pkg):
    package = importlib.import_module(f"sail_vl_nb.{pkg}")
    assert not (Path(package.__file__).parent.parent / f"{pkg}.py").exists(), f"sail_vl_nb/{pkg}.py is left over from before the split"
    for m in PACKAGES[pkg]:                             # each module imported first, in a fresh interpreter
        out = subprocess.run([sys.executable, "-c", f"import sail_vl_nb.{pkg}.{m}"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (m, out.stderr[-1500:])
