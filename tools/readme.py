#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb (quarto, which `nbdev-readme` needs, is not installable here).
Markdown cells are copied, with links relative to nbs/ (`](../x)`) made relative to the repository root (`](x)`);
code cells become fenced python blocks; cells whose first line is `#| hide` are skipped.
`--check` exits 1 (and says so) when README.md differs from what the notebook gives."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        if c['cell_type'] == 'markdown': parts.append(re.sub(r'\]\(\.\./', '](', src))
        elif c['cell_type'] == 'code':
            body = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            if body: parts.append(f'```python\n{body}\n```')
    return '<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    txt, out = render(), root/'README.md'
    if '--check' in sys.argv:
        if not out.exists() or out.read_text() != txt:
            print('FAIL: README.md is out of date with nbs/index.ipynb; run `python tools/readme.py`'); sys.exit(1)
        print('ok')
    else:
        out.write_text(txt); print(f'wrote {out}')
