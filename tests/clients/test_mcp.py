"""ringcast-mcp with the official MCP client (@modelcontextprotocol/sdk's StdioClientTransport,
driven by mcp_client.js) against a real engine: the tools are listed with their input schemas,
each one answers from the engine's HTTP API, and bad calls get JSON-RPC errors. A second part
speaks raw JSON-RPC to the binary for the malformed messages a conforming client never sends."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))

from engine_harness import BUILD, Engine, run, connect, subscribe, recv_json  # noqa: E402

MCP = os.path.join(BUILD, "mcp", "ringcast-mcp")
KEY = "mcp-test-key-0123456789"
TOOLS = {"websocket_health_check", "websocket_get_status", "websocket_list_rooms",
         "websocket_broadcast_test_event", "websocket_get_metrics"}


@pytest.fixture
def mcp_bin():
    if not os.access(MCP, os.X_OK):
        pytest.fail(f"ringcast-mcp missing: {MCP} (ninja -C build)")
    return MCP


@pytest.fixture
def keyed_engine():
    e = Engine(["--threads", "2", "--api-key", KEY])
    yield e
    e.check_clean_exit()


def http_url(e):
    return f"http://{e.host}:{e.port}"


def test_mcp_sdk_client_lists_and_calls_every_tool(keyed_engine, node, mcp_bin):
    if not os.path.isdir(os.path.join(HERE, "node_modules", "@modelcontextprotocol", "sdk")):
        pytest.fail("@modelcontextprotocol/sdk missing in tests/clients/node_modules: "
                    "run scripts/deps.sh (npm ci)")
    e = keyed_engine
    channel = "mcp-room:1"

    async def listen():
        ws, _ = await connect(e.url)
        await subscribe(ws, channel)
        proc = await asyncio.create_subprocess_exec(
            node, os.path.join(HERE, "mcp_client.js"), mcp_bin, http_url(e), KEY, channel,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        ev = await recv_json(ws, timeout=5)
        await ws.close()
        return subprocess.CompletedProcess([], proc.returncode, stdout.decode(),
                                           stderr.decode()), ev

    p, ev = run(listen(), timeout=90)
    assert p.stdout.strip(), f"mcp client printed nothing (rc {p.returncode}): {p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and "error" not in out, out
    assert out["serverVersion"]["name"] == "ringcast-mcp"
    assert "tools" in out["capabilities"]
    tools = {t["name"]: t for t in out["tools"]}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t["inputSchema"]["type"] == "object" and t["description"]
    assert tools["websocket_broadcast_test_event"]["inputSchema"]["required"] == ["channel"]

    c = out["calls"]
    for name in ("health", "status", "broadcast", "rooms", "metrics"):
        assert c[name]["isError"] is False, (name, c[name])
    health = json.loads(c["health"]["text"])
    assert health["status"] == "healthy" and health["workers"] == 2
    status = json.loads(c["status"]["text"])
    assert status["config"]["api_key"] == "(redacted)"
    pub = json.loads(c["broadcast"]["text"])
    assert pub["subscribers"] == 1 and pub["seq"] >= 1
    rooms = json.loads(c["rooms"]["text"])
    assert {"name": channel, "subscribers": 1, "seq": pub["seq"]} in rooms["rooms"]
    assert "# TYPE ringcast_" in c["metrics"]["text"]
    # The engine refused the channel: a tool error carrying its answer, not a protocol error.
    assert c["badChannel"]["isError"] is True and "HTTP 400" in c["badChannel"]["text"]

    # The subscriber got the test event, with the message escaped correctly end to end.
    assert ev["type"] == "event" and ev["room"] == channel and ev["event"] == "test"
    assert ev["data"]["message"] == 'héllo "mcp"' and ev["data"]["source"] == "ringcast-mcp"

    errs = out["errors"]
    assert errs["unknownTool"]["code"] == -32602 and "no_such_tool" in errs["unknownTool"]["message"]
    assert errs["missingChannel"]["code"] == -32602
    assert errs["extraArg"]["code"] == -32602
    assert errs["badLimit"]["code"] == -32602
    assert errs["unknownMethod"]["code"] == -32601


def rpc_session(mcp_bin, url, lines, key=KEY):
    p = subprocess.run([mcp_bin, "--url", url, "--api-key", key, "--timeout-ms", "2000"],
                       input="".join(lines), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_mcp_raw_jsonrpc_errors(keyed_engine, mcp_bin):
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "raw", "version": "0"}}}) + "\n"
    lines = [
        init,
        '{"jsonrpc":"2.0","method":"notifications/initialized"}\n',  # no answer
        '{"jsonrpc":"2.0","id":2,"method":"tools/list"\n',  # truncated: parse error
        "[]\n",  # batch: invalid request
        '{"jsonrpc":"1.0","id":"x","method":"ping"}\n',
        '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}\n',
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"arguments":{}}}\n',
        '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"websocket_list_rooms",'
        '"arguments":{"limit":"ten"}}}\n',
        '{"jsonrpc":"2.0","id":"s5","method":"ping"}\n',
        "\n",
        '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"websocket_get_status"}}\n',
        '{"jsonrpc":"2.0","id":7,"method":"x' + "y" * (2 << 20) + '"}\n',  # over 1 MiB
        '{"jsonrpc":"2.0","id":8,"method":"ping"}',  # no final newline
    ]
    got = rpc_session(mcp_bin, http_url(keyed_engine), lines)
    assert got[0]["id"] == 1 and got[0]["result"]["protocolVersion"] == "2025-06-18"
    assert got[1] == {"jsonrpc": "2.0", "id": None,
                      "error": {"code": -32700, "message": "parse error: not valid JSON"}}
    assert got[2]["id"] is None and got[2]["error"]["code"] == -32600
    assert got[3]["id"] == "x" and got[3]["error"]["code"] == -32600
    assert got[4]["id"] is None and got[4]["error"]["code"] == -32600
    assert got[5]["id"] == 3 and got[5]["error"]["code"] == -32602
    assert got[6]["id"] == 4 and got[6]["error"]["code"] == -32602
    assert got[7] == {"jsonrpc": "2.0", "id": "s5", "result": {}}
    assert got[8]["id"] == 6 and got[8]["result"]["isError"] is False
    assert len(json.loads(got[8]["result"]["content"][0]["text"])["workers"]) == 2
    assert got[9]["id"] is None and got[9]["error"]["code"] == -32600
    assert got[10] == {"jsonrpc": "2.0", "id": 8, "result": {}}
    assert len(got) == 11


def test_mcp_tool_errors_from_the_engine(keyed_engine, mcp_bin):
    call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"websocket_get_status",' \
           '"arguments":{}}}\n'
    got = rpc_session(mcp_bin, http_url(keyed_engine), [call], key="wrong")
    r = got[0]["result"]
    assert r["isError"] is True and "HTTP 401" in r["content"][0]["text"]
    # Nobody listening: a tool error naming the address, within the timeout.
    dead = rpc_session(mcp_bin, "http://127.0.0.1:1", [call])[0]["result"]
    assert dead["isError"] is True and "cannot connect" in dead["content"][0]["text"]


def test_mcp_bad_command_line(mcp_bin):
    for args in (["--url", "https://x"], ["--url", "http://h:99999"], ["--bogus"], ["extra"]):
        p = subprocess.run([mcp_bin, *args], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 2, (args, p.stderr)
