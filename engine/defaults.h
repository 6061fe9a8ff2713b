/* defaults.h - every compile-time default of the engine, with its unit and the reason for it.
 * config.c starts from these; --help prints them. */
#ifndef RINGCAST_ENGINE_DEFAULTS_H
#define RINGCAST_ENGINE_DEFAULTS_H

/* TCP port: the Python servers ringcast replaces listened on 8765. */
#define RC_DEF_PORT 8765
/* Bind address: loopback until an operator decides to expose the server. */
#define RC_DEF_BIND "127.0.0.1"
/* Worker threads: 0 means one per online CPU, each pinned to its core. */
#define RC_DEF_THREADS 0
/* Largest supported worker count: room membership across workers is a 64-bit mask. */
#define RC_MAX_THREADS 64
/* Most rooms one connection may join: struct conn counts them in 16 bits. */
#define RC_MAX_SUBSCRIPTIONS 65535
/* Deepest token bucket: a client persistently over the limit is closed after 2 x burst refused
 * messages in a row, counted in 16 bits (struct conn's rl_strikes). */
#define RC_MAX_RATE_BURST 32767
/* Most submission entries per ring: the completion queue is 8x, and the kernel refuses more
 * than 65536 completion entries (IORING_MAX_CQ_ENTRIES). */
#define RC_MAX_RING_ENTRIES 8192
/* Connections (all workers): beyond it the upgrade is refused with HTTP 503. */
#define RC_DEF_MAX_CONNECTIONS 10000
/* Bytes per client message (all fragments): the Python servers' 64 KiB; larger closes 1009. */
#define RC_DEF_MAX_MESSAGE_BYTES 65536
/* Rooms one connection may join: bounds per-connection memory. */
#define RC_DEF_MAX_SUBSCRIPTIONS 100
/* Rooms across all workers: a room costs about 200 bytes plus its name on its home and on
 * every other worker with subscribers, so 100,000 bound the room tables to tens of MB. */
#define RC_DEF_MAX_ROOMS 100000
/* Bytes queued to one connection before it is a slow consumer (closed with 4008). */
#define RC_DEF_MAX_QUEUE_BYTES (1024 * 1024)
/* Client messages per second (token bucket refill); 0 disables the limit. */
#define RC_DEF_RATE_LIMIT 100
/* Token bucket depth: a client may burst this many messages at once. */
#define RC_DEF_RATE_BURST 200
/* Seconds of silence before the server pings a connection (under common 30-60 s proxy idle
 * timeouts). */
#define RC_DEF_HEARTBEAT_S 25
/* Seconds to wait for any traffic after a ping before closing with 4000. */
#define RC_DEF_HEARTBEAT_TIMEOUT_S 10
/* Seconds a client has to complete the HTTP upgrade (slowloris defence). */
#define RC_DEF_HANDSHAKE_TIMEOUT_S 5
/* Seconds a graceful shutdown may take to deliver queued events and close handshakes. */
#define RC_DEF_DRAIN_TIMEOUT_S 5
/* Seconds an HTTP API keep-alive connection may stay idle, or take to finish a request, before
 * it is closed (408 when a request is unfinished): a backend publisher reuses a connection
 * within milliseconds, and a slow-body client holds a slot no longer than this. */
#define RC_DEF_HTTP_IDLE_TIMEOUT_S 15
/* Authentication at the upgrade: off keeps a deployment that has no tokens working as before. */
#define RC_DEF_AUTH "off"
/* Seconds of clock skew allowed on exp/nbf: backends and this host may disagree a little. */
#define RC_DEF_JWT_LEEWAY_S 30
/* Addresses tracked by the per-IP limits: 64 Ki entries (2 MiB) is several times the default
 * max-connections, so the table fills only if that many distinct addresses connect at once. */
#define RC_DEF_PER_IP_TABLE_SIZE 65536
/* Events a room keeps for resume and polling: a reconnect within a few seconds at a few events
 * per second loses nothing; worst case history-size x max-rooms events (docs/operations.md). */
#define RC_DEF_HISTORY_SIZE 100
/* Seconds an event is kept: 0 = until history-size newer ones push it out. */
#define RC_DEF_HISTORY_TTL 0
/* Members a room may have and still list them and send join/leave events: a list of 1000 is
 * about 40 KiB, and a join storm to 1000 opted-in members at most 500 000 frames. */
#define RC_DEF_PRESENCE_MAX 1000
/* Listen backlog per worker socket. */
#define RC_DEF_BACKLOG 4096
/* Provided receive buffers per worker, and their size in bytes: 16 MiB of buffer per worker
 * absorbs a burst from thousands of connections without falling back to re-arming recvs. */
#define RC_DEF_RECV_BUFFERS     4096
#define RC_DEF_RECV_BUFFER_SIZE 4096
/* Submission queue entries per worker ring; completions are sized at 4x by the kernel default
 * ratio we request. */
#define RC_DEF_RING_ENTRIES 4096

#endif
