"""Benchmark: MedUI against a real Orthanc (tests/orthanc.py). Prints JSON.

    .venv/bin/python bench/bench_pacs.py [--studies 300] [--repeats 3] [--direct] [--parallel K] [--delay-ms D]

- search: every page (50 studies each) of `--studies` generated studies, by QIDO-RS and by C-FIND;
- retrieve: the 255-slice JPEG Lossless chest CT (../shared/data/ct-chest-covid-255, else a generated
  CT) into a loaded series, by WADO-RS and by C-GET, against Orthanc's own time to serve the same
  bytes (one raw HTTP download of the series, multipart, as stored) plus MedUI's own load time of
  those bytes. Target: `ratio_wado` and `ratio_cget` <= 1.5. Those decode instances as they arrive
  (`decode_ahead`); `*_then_load` load them only once all have arrived, and `cget_parallel` is C-GET
  on `--parallel` associations (default 3; `cget` uses a node's default, one), for comparison;
- results: build SR + SEG + SC + PDF for one chest radiograph and send them by STOW-RS.

`--direct` runs Orthanc without the test's network namespace: the forwarder that bridges the
namespaces is a Python relay, and on a busy 2-core machine it adds a few milliseconds to each of
C-GET's 255 sub-operation round trips. `--delay-ms D` sends the DIMSE traffic through
`bench/delay_proxy.py`, which holds it D ms each way (a PACS 2D ms away; the raw download and WADO-RS
stay direct). Timings are medians of interleaved repeats in one run.

Measured on the shared 2-core VM (`--repeats 3`, `--studies 50` for the --parallel sweeps), before the
PDU size, File Meta and log handler changes of December 2026 (README, "Hospital connection"):
- `--direct`: `ratio_cget` 2.08 (K=3) / 2.01 (K=2) / 2.12 (K=4) against `ratio_cget_one` 1.87-2.02 in
  the same runs, 2.15 against 1.93 in the default run: on loopback the MedUI process is CPU-bound
  (pynetdicom's PDU handling holds the GIL, the decoders share the two cores) and more associations
  only add work;
- through the relay (no `--direct`, a few ms per round trip): `ratio_cget` 3.16 (K=2), 2.57 (K=3),
  2.25 (K=4) against `ratio_cget_one` 5.5-6.1: with any latency on the link the round trips overlap.
After them (`--direct --studies 20 --repeats 5`, two runs): C-GET on one association 1.51 / 1.58, on 3
1.63 / 1.82, `ratio_wado` 1.04 / 1.22. After the quick C-STORE reply (medui/pacs/store_reply.py), the
C-FIND abort fix and Orthanc with TCP_NODELAY=1, with one association the default: whole runs
(`--repeats 5`) `ratio_cget` 1.40 (`--direct`) / 1.39 (relay), `ratio_cget_parallel` 1.77 / 1.75,
`ratio_wado` 1.15 / 1.14; `--delay-ms 2`: 2.09 against 1.82 on 3 associations; `--delay-ms 5`: 3.28
against 1.91.
Needs Orthanc (apt-get install orthanc orthanc-dicomweb).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CT = ROOT.parent / "shared" / "data" / "ct-chest-covid-255"


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _studies(n: int) -> list[object]:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    out = []
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.PatientID, ds.PatientName = f"BENCH-{k:04d}", f"Bench^Study{k:04d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out.append(ds)
    return out


def _ct_files(tmp: Path) -> tuple[list[Path], str]:
    if CT.is_dir():
        return sorted(CT.glob("*.dcm")), "ct-chest-covid-255 (real, JPEG Lossless)"
    from tests.synth import phantom_volume, write_series

    return write_series(tmp / "ct", phantom_volume(255, 512, 512)), "generated 255-slice CT (uncompressed)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--direct", action="store_true",
                        help="run Orthanc without the private network namespace and its forwarder (whose relay "
                             "adds latency to every DIMSE round trip); its ports are then open while it runs")
    parser.add_argument("--parallel", type=int, default=3,
                        help="C-GET associations at once in the `cget_parallel` variant (the node setting `parallel`)")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="hold DIMSE traffic this long each way (bench/delay_proxy.py): a more distant PACS")
    args = parser.parse_args()

    import requests

    from medui.io.loader import load
    from medui.pacs.model import DimsePeer, Node, StudyQuery, WebPeer
    from medui.usecases import pacs, results
    from medui.usecases.diagnose import load_model, overlay, score
    from tests.orthanc import MEDUI_AET, ORTHANC_AET, available, free_port, start

    if not available():
        print(json.dumps({"error": "Orthanc not installed: apt-get install orthanc orthanc-dicomweb"}))
        sys.exit(1)
    doc: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="medui-bench-pacs-") as tmp_name:
        tmp = Path(tmp_name)
        server = start(tmp / "orthanc", isolate=False if args.direct else None)
        proxy: subprocess.Popen[bytes] | None = None
        try:
            dicom_port = server.dicom_port
            if args.delay_ms:
                dicom_port = free_port()
                proxy = subprocess.Popen([sys.executable, str(ROOT / "bench" / "delay_proxy.py"), str(dicom_port),
                                          str(server.dicom_port), str(args.delay_ms)])
                time.sleep(0.5)
            peer = DimsePeer(ORTHANC_AET, "127.0.0.1", dicom_port, MEDUI_AET, 0, 120)
            node = Node("bench", WebPeer(server.dicomweb, timeout=120), peer)
            doc["cget_associations"] = peer.parallel
            doc["cget_parallel_associations"] = args.parallel
            doc["dimse_delay_ms_each_way"] = args.delay_ms
            doc["orthanc_isolated_namespace"] = server.isolated
            pacs.send(node, _studies(args.studies))  # type: ignore[arg-type]

            def all_pages(using: str) -> int:
                offset, n = 0, 0
                while True:
                    page = pacs.search(node, StudyQuery(patient_name="Bench^*"), offset, using=using)
                    n += len(page.items)
                    if not page.more:
                        return n
                    offset += len(page.items)

            for using in ("dicomweb", "dimse"):
                t, n = _median(lambda u=using: all_pages(u), args.repeats)  # type: ignore[misc]
                doc[f"search_{using}_s"] = round(t, 3)
                doc[f"search_{using}_found"] = n
            files, label = _ct_files(tmp)
            server.upload(files)
            doc["ct"] = label
            doc["ct_files"] = len(files)
            doc["ct_mb"] = round(sum(p.stat().st_size for p in files) / 1e6, 1)
            study_uid, series_uid = _uids(files[0])
            url = f"{server.dicomweb}/studies/{study_uid}/series/{series_uid}"
            accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
                      "Accept-Encoding": "identity"}  # as MedUI asks (medui.pacs.dicomweb._session)

            def raw() -> int:
                with requests.get(url, headers=accept, stream=True, timeout=120) as resp:
                    return sum(len(chunk) for chunk in resp.iter_content(1 << 20))

            several = Node("bench", None, dataclasses.replace(peer, parallel=args.parallel))

            def retrieve_load(using: str, ahead: bool = True, at: Node = node) -> int:
                got = pacs.retrieve(at, study_uid, series_uid, expected=len(files), using=using, decode_ahead=ahead)
                assert got.complete, got.error
                return pacs.load_retrieved(got).series[0].n_slices

            items = pacs.retrieve(node, study_uid, series_uid).items
            variants: dict[str, Callable[[], object]] = {
                "raw": raw, "load": lambda: load(items),
                "wado": lambda: retrieve_load("dicomweb"), "cget": lambda: retrieve_load("dimse"),
                # the same, loading only once everything has arrived (as before decoding ahead)
                "wado_then_load": lambda: retrieve_load("dicomweb", False),
                "cget_then_load": lambda: retrieve_load("dimse", False),
                # C-GET on several associations (parallel = --parallel), for comparison
                "cget_parallel": lambda: retrieve_load("dimse", at=several)}
            rows: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
                for key, fn in variants.items():
                    t = time.perf_counter()
                    fn()
                    rows[key].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in rows.items()}
            doc.update({f"{k}_s": round(v, 3) for k, v in med.items()})
            doc["raw_mb_per_s"] = round(doc["ct_mb"] / med["raw"], 1)  # type: ignore[operator]
            doc["slices_loaded"] = retrieve_load("dicomweb")
            for key in ("wado", "cget", "wado_then_load", "cget_then_load", "cget_parallel"):
                doc[f"ratio_{key}"] = round(med[key] / (med["raw"] + med["load"]), 3)
            doc["target_ratio"] = 1.5

            t = time.perf_counter()
            model = load_model("demo-chest-phantom-v1", ROOT / "models")
            doc["model_load_s"] = round(time.perf_counter() - t, 3)
            cxr = ROOT / "medui" / "reading" / "sample_data" / "phantom_chest_nodule.dcm"
            pairs = [(str(cxr), cxr.read_bytes())]
            dx = score(load(pairs).series[0], model)

            def build_send() -> int:
                src, srcs = results.source_headers(dx, results.headers_from_bytes(pairs), 0)
                built = results.build(results.result_input(dx, overlay(dx, 0, "gradcam"), src, srcs))
                return len(results.send(built, node))

            t_results, sent = _median(build_send, args.repeats)
            doc["results_build_and_send_s"] = round(t_results, 3)
            doc["results_objects_sent"] = sent
        finally:
            if proxy is not None:
                proxy.kill()
            server.stop()
    print(json.dumps(doc, indent=2))


def _uids(path: Path) -> tuple[str, str]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


if __name__ == "__main__":
    main()
