"""The fleet link under a flood: a thousand messages from a real MQTT client through the test session's real
mosquitto reach a device link whose loop is blocked; a bounded queue holds some, the rest are shed and counted."""

from __future__ import annotations

import time

from support.fakes import QuietAgent


def test_a_flood_while_the_loop_is_busy_is_shed_not_queued(request, tmp_path_factory, tmp_path):
    """Messages that arrive faster than the loop handles them wait in a bounded queue; the rest are dropped and counted."""
    import asyncio
    import threading

    from harken import config
    from harken.fleet.link import MAX_WAITING, DeviceLink
    from support.broker import mqtt_client, shared_broker

    broker = shared_broker(request.config, tmp_path_factory)
    counted: list[tuple[str, str]] = []

    def flood(done: threading.Event) -> None:
        client = mqtt_client(broker)
        client.connect(broker.host, broker.port)
        client.loop_start()
        infos = [client.publish("harken/flood1/cmd", b"junk %d" % i, qos=1) for i in range(1000)]
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()
        done.set()

    async def main() -> None:
        settings = config.Settings(mqtt=config.MqttSettings(url=broker.url), device=config.DeviceSettings(id="flood1"))
        link = DeviceLink(settings, "flood1", QuietAgent(), on_command=lambda name, outcome: counted.append((name, outcome)),
                          floor_path=tmp_path / "floor")
        connected = asyncio.Event()
        link.on_change = lambda up: connected.set() if up else None
        link.start()
        await asyncio.wait_for(connected.wait(), 20)
        await asyncio.sleep(0.5)  # the SUBACK
        done = threading.Event()
        threading.Thread(target=flood, args=(done,), daemon=True).start()
        done.wait(60)  # the loop is blocked meanwhile, as by a long computation
        time.sleep(1.0)  # the broker's deliveries reach paho's thread
        deadline = time.monotonic() + 20
        while len(counted) < 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await link.close()

    asyncio.run(asyncio.wait_for(main(), 120))
    outcomes = [outcome for _, outcome in counted]
    assert len(outcomes) == 1000 and set(outcomes) == {"malformed", "shed"}
    assert outcomes.count("malformed") <= MAX_WAITING + 5 and outcomes.count("shed") >= 1000 - MAX_WAITING - 5
