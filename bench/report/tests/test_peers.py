"""The peers section (peers.json of scripts/bench-peers.sh): reading the file, the time basis,
the tables, and the command line's optional --peers-if-present; on the committed sample
tests/data/report/peers.json (a real run of the script, sample lists removed)."""
import copy
import importlib.util
import json
import os
import tempfile
import unittest

from report.data import InputError
from report.peers import load_peers, peer_time, time_table

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data", "report")
SAMPLE = os.path.join(DATA, "peers.json")


def sample() -> dict:
    return load_peers(SAMPLE, [])


class Loading(unittest.TestCase):
    def test_explicit_path_and_candidates(self):
        self.assertEqual(sample()["schema"], "fastattn-peers")
        with tempfile.TemporaryDirectory() as tmp:
            missing = os.path.join(tmp, "absent.json")
            self.assertIsNone(load_peers(None, [missing]))  # no candidate: no section
            self.assertEqual(load_peers(None, [missing, SAMPLE])["_path"], SAMPLE)
            with self.assertRaisesRegex(InputError, "cannot read the peers file"):
                load_peers(missing, [SAMPLE])  # --peers must exist

    def test_wrong_schema_or_version_is_an_error_naming_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "p.json")
            for change, message in ((("schema", "other"), "p.json: schema is 'other'"),
                                    (("schema_version", 0), "schema_version 0"),
                                    (("results", None), "no implementations / results")):
                with open(SAMPLE, encoding="utf-8") as f:
                    data = json.load(f)
                data[change[0]] = change[1]
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                with self.assertRaisesRegex(InputError, message):
                    load_peers(path, [])


class Tables(unittest.TestCase):
    def test_cpu_time_when_the_machine_was_busy(self):
        peers = sample()
        self.assertTrue(peers["timing_quality"]["contended"])
        result = next(r for r in peers["results"] if r["impl"] == "fastattn.exact"
                      and r["N"] == 4096 and not r["causal"])
        t = peer_time(peers, "fastattn.exact", 4096, False)
        self.assertEqual((t.ms, t.pct), (result["cpu_time_ms"]["median"],
                                         result["pct_of_peak_cpu_time"]))
        calm = copy.deepcopy(peers)
        calm["timing_quality"]["contended"] = False
        t = peer_time(calm, "fastattn.exact", 4096, False)
        self.assertEqual((t.ms, t.pct), (result["time_ms"]["median"], result["pct_of_peak"]))

    def test_time_table(self):
        table = time_table(sample())
        names = [name for name, _ in table.rows]
        self.assertEqual(names[0], "fastattn Exact<float>")
        self.assertEqual(len(names), 6)
        self.assertEqual(table.columns, ["Implementation", "N = 1024", "N = 4096", "N = 1024",
                                         "N = 4096"])
        cells = dict(table.rows)
        # GroupQueryAttention is causal only; causal MultiHeadAttention is measured but not a
        # headline entry (‡); others carry their time relative to fastattn's.
        self.assertEqual(cells["ONNX Runtime com.microsoft.GroupQueryAttention"][0].sub,
                         "not run")
        self.assertTrue(cells["ONNX Runtime com.microsoft.MultiHeadAttention"][2].text
                        .endswith("‡"))
        self.assertRegex(cells["ggml flash_attn_ext, F32 K/V"][1].sub, r"^\d+ % peak · [\d.]+×$")
        self.assertRegex(cells["fastattn Exact<float>"][1].sub, r"^\d+ % peak$")

    def test_failed_implementation_shows_its_status(self):
        peers = sample()
        for r in peers["results"]:
            if r["impl"] == "ort.attention23":
                r.update(status="failed", reason="max abs error 1 > 2e-4")
        cells = dict(time_table(peers).rows)["ONNX Runtime ONNX Attention (opset 23)"]
        self.assertEqual((cells[0].text, cells[0].sub), ("failed", "max abs error 1 > 2e-4"))


@unittest.skipUnless(HAVE_MPL, "matplotlib is not installed")
class CommandLine(unittest.TestCase):
    def run_main(self, *extra: str) -> tuple[int, str]:
        from report.__main__ import main
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "index.html")
            code = main(["--bench", os.path.join(DATA, "bench.json"),
                         "--accuracy", os.path.join(DATA, "accuracy.json"), "--out", out,
                         "--check", *extra])
            page = ""
            if os.path.exists(out):
                with open(out, encoding="utf-8") as f:
                    page = f.read()
        return code, page

    def test_peers_section_only_with_a_peers_file(self):
        code, page = self.run_main("--peers-if-present", "/nonexistent/peers.json")
        self.assertEqual(code, 0)
        self.assertNotIn('id="peers"', page)
        code, page = self.run_main("--peers-if-present", "/nonexistent/peers.json",
                                   "--peers-if-present", SAMPLE)
        self.assertEqual(code, 0)
        self.assertIn("fastattn and other CPU attention implementations", page)
        self.assertIn('<table id="peers-table">', page)
        self.assertEqual(self.run_main("--peers", "/nonexistent/peers.json")[0], 2)


if __name__ == "__main__":
    unittest.main()
