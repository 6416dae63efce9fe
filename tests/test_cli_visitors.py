"""visitor add, visitor list, visitor revoke: the QR code printed and written privately, what is kept
(never the pass itself), bad input refused changing nothing, and on the hub the lots and their uses."""

import json
import stat

import cv2
import pytest

from lotcontrol import passes
from lotcontrol.config import prepare_data_dir
from lotcontrol.store import Store


def read_png(path) -> str:
    text, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(cv2.imread(str(path)))
    return text


def kept(data_dir):
    with Store.in_dir(data_dir) as store:
        return store.passes(), store.events(), store.pass_keys()


def test_visitor_add_prints_the_code_writes_a_private_png_and_keeps_no_pass(run, data_dir, tmp_path):
    png = tmp_path / "li.png"
    result = run("visitor", "add", "Courier  Li", "--valid", "2h", "--uses", "2", "--png", png)
    assert result.exit_code == 0, result.output
    assert "█" in result.output or "▀" in result.output  # the QR code in text blocks
    [row], events, keys = kept(data_dir)
    assert f"pass {row['id']} for 'Courier Li': 2 entries at every lot until " in result.output
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    text = read_png(png)
    visitor_pass = passes.verify(text, keys)
    assert visitor_pass == passes.Pass(row["id"], "Courier Li", None, row["not_after"], 2)
    assert (row["visitor"], row["uses"], row["used"], row["revoked"], row["lots"]) == ("Courier Li", 2, 0, None, None)
    assert [(e.type, e.details["pass"], e.details["visitor"]) for e in events] == [
        ("visitor.pass_issued", row["id"], "Courier Li")]
    database = b"".join(p.read_bytes() for p in data_dir.glob("lotcontrol.db*"))
    mac = text.rsplit(".", 1)[1]
    assert text.encode() not in database and mac.encode() not in database and mac not in result.output


def test_an_existing_png_is_replaced_and_made_private(run, tmp_path):
    png = tmp_path / "old.png"
    png.write_bytes(b"old")
    png.chmod(0o644)
    assert run("visitor", "add", "Ann's guest", "--png", png).exit_code == 0
    assert stat.S_IMODE(png.stat().st_mode) == 0o600 and read_png(png).startswith("LCV1.")


@pytest.mark.parametrize("args,says", [
    (["--valid", "40d"], "Error: --valid '40d': a pass is valid for more than 0 s and at most 30 days"),
    (["--valid", "soon"], "Error: --valid 'soon': give a number and s, m, h or d"),
    (["--uses", "0"], "Invalid value for '--uses'"),
    (["--lots", "A"], "Error: --lots names the lots a pass opens, on the hub"),
    (["--png", "/nonexistent/folder/x.png"], "Error: --png /nonexistent/folder/x.png: No such file or directory"),
])
def test_bad_input_is_refused_by_name_and_changes_nothing(run, data_dir, args, says):
    prepare_data_dir(data_dir)
    result = run("visitor", "add", "Courier Li", *args)
    assert result.exit_code != 0 and says in result.output, result.output
    assert "Traceback" not in result.output
    passes_kept, events, _ = kept(data_dir)
    assert passes_kept == [] and events == []


def test_visitor_list_and_revoke(run, data_dir):
    Store.in_dir(prepare_data_dir(data_dir)).close()
    assert run("visitor", "list").output == "no visitor passes issued here\n"
    run("visitor", "add", "Courier Li")
    [row], _, _ = kept(data_dir)
    listed = run("visitor", "list")
    assert listed.exit_code == 0 and f"{row['id']}  Courier Li" in listed.output and "valid" in listed.output
    revoked = run("visitor", "revoke", row["id"].upper())
    assert revoked.exit_code == 0 and revoked.output == f"revoked pass {row['id']} of 'Courier Li'\n"
    again = run("visitor", "revoke", row["id"])
    assert again.exit_code == 0 and "was already revoked" in again.output
    unknown = run("visitor", "revoke", "0000000000000000")
    assert unknown.exit_code == 1 and "Error: no visitor pass '0000000000000000' was issued here" in unknown.output
    [as_json] = json.loads(run("visitor", "list", "--json").output)
    assert as_json["state"] == "revoked" and as_json["revoked"]
    _, events, _ = kept(data_dir)
    assert [e.type for e in events] == ["visitor.pass_issued", "visitor.revoked"]


def test_on_the_hub_a_pass_names_its_lots_and_the_list_sums_the_lots_uses(run, tmp_path):
    from lotcontrol.hub.store import open_hub

    hub = tmp_path / "hub"
    config = tmp_path / "hub.toml"
    config.write_text('[hub]\nlots = ["A", "B"]\n')
    open_hub(prepare_data_dir(hub)).close()
    unknown = run("--config", config, "--hub", hub, "visitor", "add", "Courier Li", "--lots", "A,C")
    assert unknown.exit_code == 1 and "unknown lot 'C'" in unknown.output
    added = run("--config", config, "--hub", hub, "visitor", "add", "Courier Li", "--lots", "A,B", "--uses", "3")
    assert added.exit_code == 0 and "3 entries at A, B until" in added.output
    with open_hub(hub) as store:
        [row] = store.passes()
        assert row["lots"] == ["A", "B"]
        for lot, used in (("A", 1), ("B", 1)):  # what the lots reported (lotcontrol.hub.village keeps it)
            store.db.execute("INSERT INTO hub_lot_state (lot, key, payload, received) VALUES (?, ?, ?, '')",
                             [lot, f"passes/{row['id']}", json.dumps({"used": used})])
    [listed] = json.loads(run("--config", config, "--hub", hub, "visitor", "list", "--json").output)
    assert (listed["used"], listed["used_by_lot"], listed["state"]) == (2, {"A": 1, "B": 1}, "valid")
