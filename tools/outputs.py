#!/usr/bin/env python
"""Run notebooks as `nbdev-test` does and commit the outputs a reader needs: figures, tables, printed results.

    python tools/outputs.py [NOTEBOOK ...]    # execute and write back (default: nbs/*.ipynb, nbs/tutorials/*.ipynb)
    python tools/outputs.py --check [NB ...]  # no execution: exit 1 if committed outputs break the policy
    python tools/outputs.py --workers 2       # notebooks in parallel (each one in a fresh process)

Execution is nbdev's: the cells `nbdev.test.nb_test_cells` selects (no `#| slow`, `#| notest`, `#| eval: false`)
run in an `execnb.shell.CaptureShell` in the notebook's folder, with `IN_TEST=1`, each notebook in a new process
with a fixed `PYTHONHASHSEED`. A preamble run before the first cell (not part of the notebook) sets matplotlib's
figure dpi to `DPI` and drops the version stamp from PNGs; an opaque figure is stored as a 256-colour PNG.
Kept: `stdout` streams, `display_data`/`execute_result` with `image/png`, `text/html`, `text/markdown`,
`text/plain`. Dropped: `stderr` streams (warnings, progress bars), errors, widgets (tqdm, ipywidgets), other mime
types, execution counts and metadata (`nbdev-clean` is run after and must change nothing). Skipped cells keep no
output; so does a cell marked `#| output: false`, and one marked `#| stdout: false` keeps no printed text (for a
cell that prints a timing). The policy: CONTRIBUTING.md, "Outputs".
"""
import argparse, base64, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
SKIP = {'index.ipynb'}              # the README's source: never executed here
DPI = 80                            # matplotlib's default is 100; 80 keeps a 6.4 x 4.8 in figure at 512 x 384 px
MAX_IMAGE = 150_000                 # bytes of one PNG (decoded)
MAX_NB = 1_000_000                  # bytes of one .ipynb file
KEEP_MIME = ('image/png', 'text/html', 'text/markdown', 'text/plain')
DROP_MIME = ('application/vnd.jupyter.widget-view+json', 'application/vnd.jupyter.widget-state+json')
ENV = dict(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1', MPLBACKEND='Agg',
           PYTHONHASHSEED='0', IN_TEST='1')
PREAMBLE = f"""
import matplotlib
matplotlib.rcParams['figure.dpi'] = {DPI}
from matplotlib_inline.backend_inline import set_matplotlib_formats
set_matplotlib_formats('png', metadata={{'Software': None}})
"""
# reprs a cell returns by accident after a plotting call: `[<matplotlib.lines.Line2D at 0x..>]`, `Text(0.5, 1.0, '..')`
_NOISE = re.compile(r'^\s*(\[?<matplotlib\.|<Figure size |Text\(|\[?<Axes: |<(seaborn\.|matplotlib\.)\S+ object)')


def _rel(fn, base=ROOT):
    return fn.relative_to(base) if fn.is_relative_to(base) else fn


def default_notebooks():
    return sorted(p for p in [*NBS.glob('*.ipynb'), *NBS.glob('tutorials/*.ipynb')] if p.name not in SKIP)


def _text(x): return ''.join(x) if isinstance(x, list) else (x or '')


def _terminal(s):
    "What a terminal shows for `s`: each line's text after its last carriage return"
    return '\n'.join(line.rsplit('\r', 1)[-1] for line in s.split('\n'))


def _false(directives, key):
    v = (directives or {}).get(key, '')
    return str(v[0] if isinstance(v, (list, tuple)) and v else v).strip().lower() == 'false'


def small_png(b64):
    "A figure re-encoded as a 256-colour PNG when it is opaque and that is smaller: a third of the bytes, same look"
    import io
    from PIL import Image
    raw = base64.b64decode(b64)
    im = Image.open(io.BytesIO(raw))
    if im.mode not in ('RGB', 'RGBA') or (im.mode == 'RGBA' and im.getchannel('A').getextrema() != (255, 255)):
        return b64.strip()
    buf = io.BytesIO()
    im.convert('RGB').quantize(256).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else b64.strip()


def keep_outputs(outputs, directives):
    "The outputs of one cell (`directives`: its nbdev directives; None if not run) a reader needs; stdout merged"
    if directives is None or _false(directives, 'output'): return []
    no_stdout, res = _false(directives, 'stdout'), []
    for o in outputs:
        ot = o.get('output_type')
        if ot == 'stream':
            if o.get('name') != 'stdout' or no_stdout: continue
            txt = _terminal(_text(o.get('text')))
            if not txt.strip(): continue
            if res and res[-1]['output_type'] == 'stream': res[-1]['text'] += txt
            else: res.append(dict(name='stdout', output_type='stream', text=txt))
        elif ot in ('display_data', 'execute_result'):
            data = o.get('data', {})
            if any(k in data for k in DROP_MIME): continue
            data = {k: v for k, v in data.items() if k in KEEP_MIME}
            if 'image/png' in data: data['image/png'] = small_png(_text(data['image/png']))
            if set(data) == {'text/plain'} and _NOISE.match(_text(data['text/plain'])): continue
            if not data: continue
            res.append(dict(data=data, metadata={}, output_type=ot))
            if ot == 'execute_result': res[-1]['execution_count'] = None
        # errors and anything else: dropped
    for o in res:
        if o['output_type'] == 'stream': o['text'] = o['text'].splitlines(True)
    return res


def run_notebook(fn):
    "Execute `fn` as nbdev-test does and write back the kept outputs; returns (name, ok, seconds, message)"
    os.environ.update(ENV)
    from fastcore.xtras import working_directory
    from fastcore.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from nbdev.config import get_config
    from nbdev.test import nb_test_cells
    from nbdev.clean import nbdev_clean
    fn = Path(fn).resolve()
    cfg = get_config(fn.parent)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags or [])
    t0 = time.time()
    run = {c.idx_: c.directives_ for c in nb_test_cells(fn, skip_flags=flags)}
    nb = read_nb(fn)
    before = fn.read_text()
    sys.path.insert(0, str(cfg.config_path))                      # as nbdev-test's `basepath`
    k = CaptureShell(fn, mpl_format='png')
    try:
        k.run(PREAMBLE)
        if k.exc: return fn.name, False, time.time() - t0, f'preamble failed: {k.exc!r}'
        with working_directory(fn.parent):
            k.run_all(nb, exc_stop=True, preproc=lambda c: c.idx_ not in run,
                      cell_timeout=int(cfg.get('cell_timeout', 600)) or None)
    except BaseException as e:
        tb = k.prettytb(fname=fn) or repr(e)
        return fn.name, False, time.time() - t0, f'failed, not written:\n{tb}'
    for c in nb.cells:
        if c.cell_type != 'code': continue
        c.outputs = keep_outputs(c.get('outputs', []), run.get(c.idx_))
        c.execution_count = None
        c.metadata.pop('execution', None)
    write_nb(nb, fn)
    nbdev_clean(fname=str(fn))
    msg = 'changed' if fn.read_text() != before else 'unchanged'
    return fn.name, True, time.time() - t0, msg


def _run_safe(fn):
    try: return run_notebook(fn)
    except Exception as e: return Path(fn).name, False, 0, f'not run: {e!r}'


def _run_fresh(fn):
    """Run one notebook in a fresh, ordinary Python process (not a pool's daemon worker, so the notebook may start
    processes of its own, as `09f` does): the (name, ok, seconds, message) of `_run_safe`."""
    import json, subprocess
    r = subprocess.run([sys.executable, __file__, '--run-one', str(fn)], capture_output=True, text=True)
    last = r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else []
    try: return tuple(json.loads(last[0]))
    except (IndexError, ValueError): return Path(fn).name, False, 0, f'not run: exit {r.returncode}: {r.stderr.strip()[-500:]}'


def check_notebook(fn):
    "Problems with the committed outputs of `fn` (no execution): a list of strings"
    import json
    fn = Path(fn)
    raw = fn.read_bytes()
    nb, errs = json.loads(raw), []
    if len(raw) > MAX_NB: errs.append(f'{len(raw):,} bytes > {MAX_NB:,}')
    for i, c in enumerate(nb.get('cells', [])):
        where = f'cell {i} ({c.get("id", "?")})'
        if c.get('cell_type') != 'code': continue
        if c.get('execution_count') is not None: errs.append(f'{where}: execution_count')
        for o in c.get('outputs', []):
            ot = o.get('output_type')
            if ot == 'stream':
                if o.get('name') != 'stdout': errs.append(f'{where}: {o.get("name")} stream')
            elif ot in ('display_data', 'execute_result'):
                if o.get('execution_count') is not None: errs.append(f'{where}: output execution_count')
                for k, v in o.get('data', {}).items():
                    if k not in KEEP_MIME: errs.append(f'{where}: output of type {k}')
                    elif k == 'image/png':
                        n = len(base64.b64decode(_text(v)))
                        if n > MAX_IMAGE: errs.append(f'{where}: PNG of {n:,} bytes > {MAX_IMAGE:,}')
            else: errs.append(f'{where}: {ot} output')
    return errs


def out_text(fn):
    "All the text of the outputs of `fn`"
    import json
    outs = [o for c in json.loads(Path(fn).read_text())['cells'] for o in c.get('outputs', [])]
    return '\n'.join([_text(o.get('text')) for o in outs]
                     + [_text(v) for o in outs for k, v in o.get('data', {}).items() if k.startswith('text/')])


def stats(fn):
    import json
    nb = json.loads(Path(fn).read_text())
    outs = [o for c in nb['cells'] for o in c.get('outputs', [])]
    imgs = [len(base64.b64decode(_text(o['data']['image/png']))) for o in outs if 'image/png' in o.get('data', {})]
    return Path(fn).stat().st_size, len(outs), imgs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebooks', nargs='*', help='default: nbs/*.ipynb and nbs/tutorials/*.ipynb but index.ipynb')
    ap.add_argument('--check', action='store_true', help='only inspect committed outputs; exit 1 on a problem')
    ap.add_argument('--workers', type=int, default=1, help='notebooks run in parallel')
    ap.add_argument('--run-one', metavar='NB', help=argparse.SUPPRESS)   # used by _run_fresh: one notebook, here
    a = ap.parse_args(argv)
    if a.run_one:
        import json
        print(json.dumps(_run_safe(a.run_one))); return 0
    fns = [Path(f).resolve() for f in a.notebooks] or default_notebooks()
    fns = [f for f in fns if f.name not in SKIP]

    if a.check:
        bad = 0
        for fn in fns:
            for e in check_notebook(fn):
                print(f'{_rel(fn)}: {e}'); bad += 1
        size, biggest = sum(f.stat().st_size for f in fns), max(fns, key=lambda f: f.stat().st_size)
        print(f'{len(fns)} notebooks, {size:,} bytes; biggest {_rel(biggest)} '
              f'{biggest.stat().st_size:,} bytes; {bad} problem(s)'
              + ('' if not bad else ' — run `make outputs` (see CONTRIBUTING.md, "Outputs")'))
        return 1 if bad else 0

    os.environ.update(ENV)   # inherited by the worker processes (PYTHONHASHSEED must be set before they start)
    failed = []
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, a.workers)) as pool:      # each thread waits on a fresh process per notebook
        for name, ok, secs, msg in pool.map(_run_fresh, [str(f) for f in fns]):
            print(f'{name}: {"ok" if ok else "FAILED"} in {secs:.0f} s, {msg}', flush=True)
            if not ok: failed.append(name)
    import tempfile
    for fn in fns:
        size, nout, imgs = stats(fn)
        errs = check_notebook(fn)
        text = out_text(fn)
        warns = [f'an output holds the path {p}: it differs on another machine'
                 for p in (str(ROOT), tempfile.gettempdir() + '/tmp') if p in text]
        print(f'  {_rel(fn, NBS)}: {size:,} bytes, {nout} outputs, {len(imgs)} figures'
              + (f' (largest {max(imgs):,} bytes)' if imgs else '')
              + ''.join(f'\n    ! {e}' for e in errs) + ''.join(f'\n    ? {w}' for w in warns))
        if errs and fn.name not in failed: failed.append(fn.name)
    print(f'{len(fns) - len(failed)} notebooks written, {len(failed)} failed'
          + (f': {" ".join(failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
