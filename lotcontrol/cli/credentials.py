"""Cards and PINs of residents: card add, card remove, pin set, pin clear. Never printed, never logged:
a card is kept as its keyed digest, a PIN as its argon2id hash (lotcontrol.credentials). Each change goes
through lotcontrol.residents, as the web console's do. On the hub (--hub) they go to the lots with the
resident (lotcontrol.fleet.residents)."""

from __future__ import annotations

import time

import click

from .. import residents as changes
from ..errors import InvalidValue
from ..phrases import Phrase
from . import App, ask_controller, cli, pass_app
from ..residents import refuse_hub_copy

POLL_SECONDS = 0.5  # `card add --read`: how often the controller is asked whether the card came




@cli.group(name="card")
def card_group() -> None:
    """Residents' cards for the Wiegand reader (kept as keyed digests, never in clear)."""


@card_group.command(name="add")
@click.argument("name")
@click.option("--uid", metavar="FORMAT:NUMBER", help="The card's format (26 or 34 bits) and number in decimal, "
              "as printed on it; without it the number is asked for, hidden.")
@click.option("--read", "read", is_flag=True, help="Take the next card shown at this lot's reader (the "
              "controller must be running).")
@click.option("--seconds", type=click.FloatRange(1, 300), default=30.0, show_default=True,
              help="With --read: how long to wait for the card.")
@pass_app
def card_add_command(app: App, name: str, uid: str | None, read: bool, seconds: float) -> None:
    """Put a card on file for NAME: typed (--uid, or asked for) or shown at the reader (--read).

    Example: lotcontrol card add "Anna Berg" --read
    """
    if uid is not None and read:
        raise click.UsageError("give --uid or --read, not both")
    if read and app.on_hub:
        raise click.UsageError("--read takes the card at a lot's reader: on the hub give the card's number "
                               "(--uid, or typed when asked)")
    store = app.store
    resident = store.resident(name)
    refuse_hub_copy(store, resident)  # before waiting for a card
    if read:
        cards = changes.add_card(store, resident.name, digest=_read_card(app, seconds))
    else:
        if uid is None:
            uid = click.prompt("Card (FORMAT:NUMBER)", hide_input=True)
        cards = changes.add_card(store, resident.name, uid=uid)
    click.echo(f"added a card for {resident.name!r} ({cards} on file)")


def _read_card(app: App, seconds: float) -> str:
    ask_controller(app, "card.read", seconds=seconds)
    click.echo(Phrase("card.read_waiting", seconds=f"{seconds:g}"), err=True)
    while True:
        answer = ask_controller(app, "card.read")  # an error (none in time) ends it as Error: ...
        if answer.get("digest"):
            return answer["digest"]
        time.sleep(POLL_SECONDS)


@card_group.command(name="remove")
@click.argument("name")
@click.option("--uid", metavar="FORMAT:NUMBER", help="Remove only this card; without it, every card of NAME.")
@pass_app
def card_remove_command(app: App, name: str, uid: str | None) -> None:
    """Remove NAME's cards from file (or only the card --uid).

    Example: lotcontrol card remove "Anna Berg"
    """
    resident = app.store.resident(name)
    removed = changes.remove_cards(app.store, resident.name, uid=uid)
    click.echo(f"removed {removed} card(s) of {resident.name!r}")


@cli.group(name="pin")
def pin_group() -> None:
    """Residents' PINs for the reader's keypad (kept as argon2id hashes, never in clear)."""


@pin_group.command(name="set")
@click.argument("name")
@pass_app
def pin_set_command(app: App, name: str) -> None:
    """Set NAME's PIN (4 to 12 digits): typed twice, never shown.

    Example: lotcontrol pin set "Anna Berg"
    """
    store = app.store
    resident = store.resident(name)
    refuse_hub_copy(store, resident)  # before asking for the PIN
    pin = click.prompt("PIN", hide_input=True, confirmation_prompt="PIN again")
    try:
        changes.set_pin(store, resident.name, pin)
    except InvalidValue as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"set the PIN of {resident.name!r}")


@pin_group.command(name="clear")
@click.argument("name")
@pass_app
def pin_clear_command(app: App, name: str) -> None:
    """Remove NAME's PIN from file (in a mode that asks for a PIN they cannot enter until one is set).

    Example: lotcontrol pin clear "Anna Berg"
    """
    resident = changes.clear_pin(app.store, name)
    click.echo(f"cleared the PIN of {resident.name!r}")
