"Tiling against transformers with min_tiles > 1, and the console script end to end."
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
from sail_vl_nb.tiling import SailVLImageProcessor, choose_grid, dynamic_tiles


@pytest.mark.parametrize("min_tiles,max_tiles", [(1, 1), (2, 6), (3, 12), (1, 24)])
def test_grid_matches_transformers(min_tiles, max_tiles):
    rng = np.random.default_rng(min_tiles * 100 + max_tiles)
    for w, h in rng.integers(1, 5000, size=(300, 2)):
        ours = choose_grid(int(w), int(h), 448, min_tiles, max_tiles)
        theirs = get_optimal_tiled_canvas((int(h), int(w)), (448, 448), min_tiles, max_tiles)
        assert ours == tuple(theirs), (w, h)
        assert min_tiles <= ours[0] * ours[1] <= max_tiles


def test_tiles_reassemble_the_resized_image():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 250, 3), dtype=np.uint8))
    tiles = dynamic_tiles(img, tile_size=32, max_tiles=12)
    cols, rows = choose_grid(250, 90, 32, 1, 12)
    assert len(tiles) == cols * rows + 1
    canvas = Image.new("RGB", (32 * cols, 32 * rows))
    for i, t in enumerate(tiles[:-1]):
        canvas.paste(t, ((i % cols) * 32, (i // cols) * 32))
    assert np.array_equal(np.asarray(canvas), np.asarray(img.resize((32 * cols, 32 * rows), Image.Resampling.BICUBIC)))


def test_processor_counts_tiles_per_image():
    proc = SailVLImageProcessor(tile_size=32, max_tiles=4)
    imgs = [Image.new("RGB", (32, 32)), Image.new("RGBA", (128, 32)), Image.new("L", (30, 70))]
    out = proc(imgs)
    assert out["num_tiles"] == [1, 5, 3]
    assert tuple(out["pixel_values"].shape) == (9, 3, 32, 32)


def test_console_script_smoke():
    exe = Path(sys.executable).parent / "sail-vl"
    cmd = [str(exe)] if exe.exists() else [shutil.which("sail-vl")]
    assert cmd[0], "the sail-vl console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(cmd + ["smoke"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "724,928 parameters" in out.stdout and "finite: True" in out.stdout
    assert "Warning" not in out.stderr, out.stderr          # a forward pass is quiet
    bad = subprocess.run(cmd + ["smoke", "--scale", "nope"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "unknown scale 'nope'" in bad.stderr


def test_cli_parser_imports_no_torch():
    "`sail-vl --help` stays fast: building the parser (curation's subcommand included) loads neither torch nor transformers."
    code = ("import sys; from sail_vl_nb.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
