"""Pub/Sub at the edge: resource names, credentials, idempotent setup, message decoding.

``python -m beam_pipelines.ops.pubsub setup --topic projects/P/topics/T --subscription
projects/P/subscriptions/S`` creates what is missing and says what it did; ``teardown``
removes them. With ``PUBSUB_EMULATOR_HOST`` set, everything talks to the emulator.
"""
from __future__ import annotations

import os
import re
import sys

from beam_pipelines.errors import CommandParser, UserError

_NAME = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_TOPIC = re.compile(rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9])/topics/({_NAME})$")
_SUBSCRIPTION = re.compile(
    rf"^projects/([a-z][a-z0-9\-]{{4,28}}[a-z0-9])/subscriptions/({_NAME})$")

_RULES = ("PROJECT: 6-30 lowercase letters, digits or hyphens; NAME: 3-255 characters, "
          "starting with a letter")

#: Message attributes the publisher sets and the streaming source reads.


def check_topic(path: str) -> str:
    if not _TOPIC.fullmatch(path or ""):
        raise UserError(f"--topic {path!r} is not a topic path: projects/PROJECT/topics/NAME "
                        f"({_RULES})")
    return path


def check_subscription(path: str) -> str:
    if not _SUBSCRIPTION.fullmatch(path or ""):
        raise UserError(f"--subscription {path!r} is not a subscription path: "
                        f"projects/PROJECT/subscriptions/NAME ({_RULES})")
    return path


def require_credentials() -> None:
    """Fail fast: without the emulator or credentials the client would retry, then hang."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise UserError("no Google Cloud credentials: set PUBSUB_EMULATOR_HOST=host:port for "
                        "the emulator, or run `gcloud auth application-default login`") from None


_SETUP_HINT = ("create it with `python -m beam_pipelines.ops.gcp setup` or `python -m "
               "beam_pipelines.ops.pubsub setup --topic ... [--subscription ...]`")


def _require(kind: str, path: str, get) -> None:
    """One clear line now rather than a job that waits on, or fails for, a missing
    resource: ``get(timeout=...)`` fetches it."""
    from google.api_core import exceptions

    try:
        get(timeout=30)
    except exceptions.NotFound:
        raise UserError(f"{kind} {path} does not exist ({_SETUP_HINT})") from None
    except exceptions.GoogleAPICallError as exc:
        raise UserError(f"{kind} {path}: {exc.message}") from None


def check_subscription_exists(subscription: str) -> None:
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as subscriber:
        _require("subscription", subscription,
                 lambda timeout: subscriber.get_subscription(subscription=subscription,
                                                             timeout=timeout))


def check_topic_exists(topic: str) -> None:
    from google.cloud import pubsub_v1

    _require("topic", topic, lambda timeout: pubsub_v1.PublisherClient().get_topic(
        topic=topic, timeout=timeout))


def ensure_topic(publisher, topic: str) -> str:
    """Create ``topic`` unless it exists; one line saying which."""
    from google.api_core.exceptions import AlreadyExists

    try:
        publisher.create_topic(name=topic)
        return f"created topic {topic}"
    except AlreadyExists:
        return f"exists  topic {topic}"


def ensure_subscription(subscriber, wanted: dict) -> str:
    """Create the subscription ``wanted`` (a ``Subscription`` as a dict) unless it exists;
    an existing one gets the settings it differs in (``update_subscription`` with their
    field mask), except its topic, which Pub/Sub cannot change."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1
    from google.protobuf import field_mask_pb2

    name = wanted["name"]
    try:
        subscriber.create_subscription(request=wanted)
        return f"created subscription {name}"
    except AlreadyExists:
        pass
    have = subscriber.get_subscription(subscription=name)
    target = pubsub_v1.types.Subscription(**wanted)
    if have.topic != target.topic:
        raise UserError(f"subscription {name} reads {have.topic}, not {target.topic}: "
                        "delete it first (teardown) to move it")
    fields = [f for f in wanted if f not in ("name", "topic")
              and getattr(have, f) != getattr(target, f)]
    if not fields:
        return f"exists  subscription {name}"
    subscriber.update_subscription(request={
        "subscription": target, "update_mask": field_mask_pb2.FieldMask(paths=fields)})
    return f"updated subscription {name}: {', '.join(fields)}"


def setup(topic: str, subscription: str | None = None, ack_deadline_s: int = 60) -> list[str]:
    """Create the topic and subscription when missing; return what was done, a line each."""
    from google.cloud import pubsub_v1

    check_topic(topic)
    require_credentials()
    done = [ensure_topic(pubsub_v1.PublisherClient(), topic)]
    if subscription:
        check_subscription(subscription)
        with pubsub_v1.SubscriberClient() as subscriber:
            done.append(ensure_subscription(subscriber, {
                "name": subscription, "topic": topic,
                "ack_deadline_seconds": ack_deadline_s}))
    return done


def remove_subscription(subscriber, subscription: str) -> str:
    from google.api_core.exceptions import NotFound

    try:
        subscriber.delete_subscription(subscription=subscription)
        return f"deleted subscription {subscription}"
    except NotFound:
        return f"absent  subscription {subscription}"


def remove_topic(publisher, topic: str) -> str:
    from google.api_core.exceptions import NotFound

    try:
        publisher.delete_topic(topic=topic)
        return f"deleted topic {topic}"
    except NotFound:
        return f"absent  topic {topic}"


def teardown(topic: str, subscription: str | None = None) -> list[str]:
    from google.cloud import pubsub_v1

    check_topic(topic)
    require_credentials()
    done = []
    if subscription:
        check_subscription(subscription)
        with pubsub_v1.SubscriberClient() as subscriber:
            done.append(remove_subscription(subscriber, subscription))
    done.append(remove_topic(pubsub_v1.PublisherClient(), topic))
    return done


def main(argv: list[str] | None = None,
         prog: str = "python -m beam_pipelines.ops.pubsub") -> int:
    parser = CommandParser(prog=prog,
                                     description="Create or remove a topic and subscription.")
    parser.add_argument("action", choices=("setup", "teardown"))
    parser.add_argument("--topic", required=True, help="projects/PROJECT/topics/NAME")
    parser.add_argument("--subscription", help="projects/PROJECT/subscriptions/NAME")
    args = parser.parse_args(argv)
    try:
        for line in (setup if args.action == "setup" else teardown)(args.topic,
                                                                     args.subscription):
            print(line)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the service's own words, on one line
        print(f"{prog}: error: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
