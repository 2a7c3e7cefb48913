"""Runs localstripe (a stateful fake of Stripe's API) with its store in memory only.

localstripe keeps everything it knows in one fixed file of the system's temporary directory and
writes the whole of it again after every change: two of them on one machine (two checkouts, CI
beside a session) would overwrite each other's, and a long run (the chaos run's ten minutes) makes
every write slower than the last. The processor's state is the tests' and runs' own, so this
launcher keeps it in memory: it starts empty and ends with the process. Run by scripts/local-stack
with the arguments it was given (`--port N`).

It adds one fault for the tests, as a network that drops a delivery would:
`POST /_config/lost_webhooks` with `payment_id=<uuid>` makes every later webhook of the intents made
for that qbill payment (their `metadata[payment_id]`) be lost on the way. The event itself is kept,
as Stripe keeps it: `/v1/events` and the intent tell the truth, which is what reconciliation reads.

And it makes one list answer as its others do: localstripe's refunds list fails with a server
error when asked for a window (`created[gte]`, which Stripe takes), where its intents list refuses
the parameter plainly; the refunds list now refuses it the same way, and the engine's client reads
the whole list and filters it, as it does for intents.

And it charges a fee, as Stripe does and localstripe does not: a charge's balance transaction
carries 1.5% of the amount plus 25 minor units (Stripe's price for European cards), so that the
providers' settlements have fees to show and to add up.
"""

from aiohttp import web
from localstripe import resources, server, webhooks
from localstripe.errors import UserError


def dump_to_disk(self):
    pass


def try_load_from_disk(self):
    pass


resources.Store.dump_to_disk = dump_to_disk
resources.Store.try_load_from_disk = try_load_from_disk

lost = set()


def schedule_webhook(event):
    metadata = event.data.get("object", {}).get("metadata") or {}
    if metadata.get("payment_id") in lost:
        return
    webhooks.schedule_webhook(event)


async def lose_webhooks(request):
    data = await server.get_post_data(request) or {}
    payment = data.get("payment_id")
    if not isinstance(payment, str) or not payment:
        raise UserError(400, "Bad request: payment_id is required")
    lost.add(payment)
    return web.Response()


_balance_init = resources.BalanceTransaction.__init__


def balance_init(self, *args, **kwargs):
    _balance_init(self, *args, **kwargs)
    if self.type == "charge":
        self.fee = round(self.amount * 0.015) + 25
        self.fee_details = [{"amount": self.fee, "currency": self.currency, "type": "stripe_fee",
                             "description": "Stripe processing fees"}]


resources.BalanceTransaction.__init__ = balance_init
_list_refunds = resources.Refund._api_list_all.__func__


def list_refunds(cls, url, created=None, **kwargs):
    if created is not None:
        raise UserError(400, "Unexpected created")
    return _list_refunds(cls, url, **kwargs)


resources.Refund._api_list_all = classmethod(list_refunds)
resources.schedule_webhook = schedule_webhook
server.app.router.add_post("/_config/lost_webhooks", lose_webhooks)
server.start()
