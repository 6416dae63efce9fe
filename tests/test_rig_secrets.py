"""Cards, PINs and visitor passes never leave the reader or the pass check (issue 20): every rig scenario
that plays cards, PINs or passes is run with its events, every log line (the controller's logger and
whatever any process writes to stdout or stderr) and every MQTT payload a publisher would send taken
down, and none of them holds a card's number (decimal, hex or its frame's bits), its keyed digest, a
PIN or keys typed at the keypad, a pass's text or signature, or the lot's pass key; and the scenario
passes (this is the only run of these scenarios). The README's and docs' examples are held to the same."""

import logging
import re
from pathlib import Path

import pytest

from lotcontrol.sim import rig
from lotcontrol.sim.rig import load
from lotcontrol.site.wiegand import card_frame

from .lots import RecordingLink
from .test_rig import SCENARIOS, marks, with_credentials

ROOT = Path(__file__).resolve().parents[1]


# run here only (tests/test_rig.py leaves them out): each must pass as well as keep its secrets
CREDENTIAL_SCENARIOS = [p for p in SCENARIOS if with_credentials(p)]


def _secrets(scenario) -> set[str]:
    """What the scenario's files say of its credentials: each card as a number, in hex and as its frame's
    bits; each PIN; each run of 4+ digits typed at the keypad; each frame played as bits."""
    from lotcontrol.credentials import parse_uid

    found: set[str] = set()
    for spec in scenario.residents:
        if spec.card:
            card = parse_uid(spec.card)
            found |= {str(card.number), format(card.number, "x"), "".join(map(str, card_frame(card.number, card.bits)))}
        if spec.pin:
            found.add(spec.pin)
    for action in scenario.actions:
        if action.keys:
            found |= set(re.findall(r"\d{4,}", action.keys))
        if action.bits and len(action.bits) >= 20:  # a card's frame (a key's burst is 4 or 8 bits: no secret)
            found.add(action.bits)
    return found


def _appears(secret: str, text: str) -> bool:
    """``secret`` in ``text`` as a whole token: a PIN 4711 is not in a distance 0.14711 or a time 12:47:11."""
    return re.search(rf"(?<![0-9A-Za-z.:]){re.escape(secret)}(?![0-9A-Za-z])", text) is not None


def test_a_secret_is_found_as_a_token_and_not_inside_other_figures():
    assert _appears("4711", "pin 4711 typed") and _appears("4711", '{"pin": "4711"}')
    assert not _appears("4711", "distance 0.14711") and not _appears("4711", "09:47:11")
    assert not _appears("4711", "id 847112")


def test_the_scenarios_with_credentials_are_the_ones_issue_20_names():
    names = {p.stem for p in CREDENTIAL_SCENARIOS}
    assert {"wiegand_bad_parity", "wiegand_pin_brute_force", "wiegand_card_and_pin", "wiegand_card_or_face",
            "wiegand_refusals", "visitor_pass_used_twice", "visitor_pass_refusals", "modes_face_and_pin",
            "modes_face_and_card", "modes_lookalike", "schedule_edge_at_midnight", "antipassback"} <= names


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=marks(p)) for p in CREDENTIAL_SCENARIOS])
def test_no_card_pin_or_pass_reaches_an_event_a_log_line_or_mqtt(path, monkeypatch, caplog, capfd):
    from lotcontrol.app import Lot
    from lotcontrol.credentials import card_digest, parse_uid
    from lotcontrol.fleet.publish import LotPublisher

    scenario = load(path)
    secrets = _secrets(scenario)
    events: list = []
    link = RecordingLink()

    credentials, passes = rig._credentials, rig._passes

    def kept_credentials(store, spec):  # the keyed digests are only known once the lot's key is made
        credentials(store, spec)
        for resident in spec.residents:
            if resident.card:
                secrets.add(card_digest(store.card_key(), parse_uid(resident.card)))

    def issued_passes(store, spec, tmp):
        pngs, texts = passes(store, spec, tmp)
        for text in texts.values():
            secrets.update([text, *text.split(".")[1:]])  # the whole text, its payload and its signature
        if texts:
            secrets.add(store.pass_key().hex())
        return pngs, texts

    start = Lot.start

    def started(lot):
        started_lot = start(lot)
        LotPublisher(link, lot.controller).attach()  # what the lot would send over MQTT
        lot.controller.listeners.add(lambda *event: events.append(event))
        return started_lot

    monkeypatch.setattr(rig, "_credentials", kept_credentials)
    monkeypatch.setattr(rig, "_passes", issued_passes)
    monkeypatch.setattr(Lot, "start", started)
    caplog.set_level(logging.DEBUG, logger="lotcontrol")
    report = rig.run(path)
    if report.skipped:
        pytest.skip(report.skipped)
    assert report.passed, [f"{c.description}: observed {c.observed}" for c in report.checks if not c.passed]
    out, err = capfd.readouterr()
    said = {"events": repr(events), "log": caplog.text + out + err, "mqtt": repr(link.heard)}
    assert events and link.heard  # something was said: the check below is not vacuous
    assert any(name.startswith("lotcontrol/lot/events/") for name, _ in link.heard)
    assert secrets, "the scenario has no credential to look for"
    leaks = [(secret, where) for secret in sorted(secrets) for where, text in said.items() if _appears(secret, text)]
    assert not leaks, leaks


def _examples() -> dict[str, str]:
    """Every fenced block of the README and docs/: the examples of output a reader copies."""
    blocks = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for index, block in enumerate(re.findall(r"```[^\n]*\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            blocks[f"{doc.name} block {index + 1}"] = block
    return blocks


def test_the_readme_and_docs_examples_show_no_card_pin_or_pass():
    examples = _examples()
    assert len(examples) > 20 and any("access.granted" in block for block in examples.values())
    secrets = set().union(*(_secrets(load(p)) for p in CREDENTIAL_SCENARIOS))
    leaks = [(secret, where) for secret in sorted(secrets) for where, text in examples.items() if _appears(secret, text)]
    assert not leaks, leaks
    pass_texts = [where for where, text in examples.items() if re.search(r"LCV1\.[A-Za-z0-9_-]{16,}", text)]
    assert not pass_texts, pass_texts  # a pass's text is a credential: an example shows its QR code's file, not it
    typed_pins = [where for where, text in examples.items()
                  if re.search(r"(?i)\b(pin|card|uid)\b[\"']?\s*[:=]\s*[\"']?\d{4,}", text)]
    assert not typed_pins, typed_pins
