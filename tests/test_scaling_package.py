"""`sail_vl_nb.scaling` is a package of modules (one notebook each, nbs/10*_scaling*.ipynb); its `__init__` must keep
every name the single module had, each defined once."""
import importlib, subprocess, sys
from pathlib import Path

import sail_vl_nb.scaling as scaling

MODULES = ("laws", "fit", "bootstrap", "compare", "plot", "sweeps")
# `sail_vl_nb.scaling.__all__` when scaling was one module (sail_vl_nb/scaling.py, nbs/10_scaling.ipynb)
OLD_ALL = ['LAWS', 'boxcox', 'Law', 'register_law', 'get_law', 'LawFit', 'fit_law', 'Bootstrap', 'bootstrap_law',
           'compare_laws', 'Linearity', 'linearity', 'plot_laws', 'sweep']


def test_old_names_are_reexported():
    assert sorted(scaling.__all__) == sorted(OLD_ALL)
    missing = [n for n in OLD_ALL if not hasattr(scaling, n)]
    assert not missing, missing
    assert callable(scaling.sweep) and callable(scaling.linearity)    # functions, not the modules of the package


def test_each_name_defined_in_one_module():
    mods = {m: importlib.import_module(f"sail_vl_nb.scaling.{m}") for m in MODULES}
    names = [n for mod in mods.values() for n in mod.__all__]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)
    assert sorted(names) == sorted(scaling.__all__)
    for m, mod in mods.items():
        for n in mod.__all__: assert getattr(scaling, n) is getattr(mod, n), (m, n)
    assert scaling.LAWS is mods["laws"].LAWS and sorted(scaling.LAWS) == ['boxcox', 'linear', 'log', 'logistic', 'power']


def test_no_stale_module_and_no_import_cycle():
    assert not (Path(scaling.__file__).parent.parent / "scaling.py").exists(), "sail_vl_nb/scaling.py is left over from before the split"
    for m in MODULES:                                   # each module imported first, in a fresh interpreter
        out = subprocess.run([sys.executable, "-c", f"import sail_vl_nb.scaling.{m}"], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, (m, out.stderr[-1500:])
