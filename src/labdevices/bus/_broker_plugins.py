"""amqtt plugins of the embedded broker: connections and topics checked like the Mosquitto ACL."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from ._broker import GUARDS

__all__ = ["GuardedBroker", "LabAuthPlugin", "LabTopicPlugin"]

log = logging.getLogger("labdevices.bus.broker")


class LabAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Connections need credentials the lab's authenticator accepts (no anonymous clients)."""

    @dataclass
    class Config:
        guard: str = ""

    async def authenticate(self, *, session: Any) -> bool | None:
        guard = GUARDS.get(self.config.guard)
        if guard is None:
            return False
        ok = await guard[0](session.username, session.password)
        if not ok:
            log.warning("embedded broker: refused a connection as %r", session.username)
        return ok


class LabTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """The same topic rules as the generated Mosquitto ACL."""

    @dataclass
    class Config:
        guard: str = ""

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        guard = GUARDS.get(self.config.guard)
        if guard is None or topic is None or session is None:
            return False
        rules = guard[1]
        user = session.username
        if action == Action.PUBLISH:
            allowed = rules.may_publish(user, topic)
        elif action == Action.SUBSCRIBE:
            allowed = rules.may_subscribe(user, topic)
        else:
            allowed = rules.may_receive(user, topic)
        if not allowed and action != Action.RECEIVE:
            log.warning("embedded broker: %r may not %s %s", user, action, topic)
        return allowed


class GuardedBroker(Broker):  # type: ignore[misc]
    """amqtt's broker, with retained messages sent only as the rules allow.

    amqtt (0.12) sends, on every connect, the retained messages of every filter that *any*
    client subscribed to, unchecked; here a client gets those of its own subscriptions
    only, each checked like a live delivery.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        topic_filter, qos = subscription
        mine = any(s is session for s, _ in self._subscriptions.get(topic_filter, []))
        if not mine:
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic=topic, action=Action.RECEIVE):
                continue
            tasks.append(
                asyncio.create_task(
                    handler.mqtt_publish(
                        retained.topic, retained.data, min(qos, retained.qos or qos), retain=True
                    )
                )
            )
        if tasks:
            await asyncio.wait(tasks)
