"""`python -m medui predict --cam` names its overlay PNGs by number, never after the input (a file name
can carry a patient's name), and says which input each number is."""

from __future__ import annotations

import json
import shutil

from medui.cli import main
from medui.reading.samples import SAMPLE_DIR

NODULE = SAMPLE_DIR / "phantom_chest_nodule.dcm"
NORMAL = SAMPLE_DIR / "phantom_chest_normal.dcm"


def test_overlays_are_numbered_and_the_output_says_which_scan_each_is(tmp_path, capsys):
    named = tmp_path / "Qzfam0x^Qzgiv0x_QZPID0X77"
    named.mkdir()
    scans = [shutil.copy(NODULE, named / "Qzfam0x_Qzgiv0x.dcm"), shutil.copy(NORMAL, named / "QZPID0X77.dcm")]
    out = tmp_path / "overlays"
    assert main(["predict", *map(str, scans), "--model", "demo-chest-phantom", "--cam", "gradcam", "--out",
                 str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["scan001_gradcam_slice1.png", "scan002_gradcam_slice1.png"]
    assert [(r["source"], r["overlay_name"], r["overlays"]) for r in doc["results"]] == [
        (str(scans[0]), "scan001", [str(out / "scan001_gradcam_slice1.png")]),
        (str(scans[1]), "scan002", [str(out / "scan002_gradcam_slice1.png")])]
    for png in out.iterdir():
        assert b"Qzfam0x" not in png.read_bytes() and b"QZPID0X77" not in png.read_bytes()

    assert main(["predict", str(scans[1]), "--model", "demo-chest-phantom", "--cam", "gradcam", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert f"  {scans[1]}: " in text
    assert f"    overlay (scan001 = this scan): {out / 'scan001_gradcam_slice1.png'}" in text


def test_without_cam_no_overlay_is_named(capsys):
    assert main(["predict", str(NODULE), "--model", "demo-chest-phantom", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["overlays"] == [] and "overlay_name" not in result
