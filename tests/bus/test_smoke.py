from labdevices.bus import BusClient, Request


async def test_round_trip(make_bus) -> None:
    server = await make_bus("server")
    client = await make_bus("client")

    async def echo(request: Request, topic: str):
        return {"echo": request.args, "actor": request.actor}

    await server.serve(server.topics.commands("p1"), echo)
    result = await client.request(client.topics.command("p1", "ping"), {"x": 1}, timeout=5)
    assert result == {"echo": {"x": 1}, "actor": client.client_id}
