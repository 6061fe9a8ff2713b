/* sys_stats.h - the engine's statistics events in the reserved "$sys" room (the dashboard's
 * feed, GET / in http_api.c).
 *
 * Once a second every worker publishes its own numbers, taken on its own thread, as an event
 * "stats" into "$sys" through the ordinary publish path (bc_publish_http without an answer): no
 * worker reads another's state, and a subscriber sums the workers' latest events. Rooms whose
 * name starts with '$' are the engine's: clients may subscribe to them but not publish
 * (RESERVED_CHANNEL over WebSocket, 403 over HTTP).
 */
#ifndef RINGCAST_ENGINE_SYS_STATS_H
#define RINGCAST_ENGINE_SYS_STATS_H

#include <stdbool.h>
#include <string.h>

#include "proto/span.h"

struct worker;

#define SYS_ROOM "$sys"
/* How many of its home rooms a worker reports, by subscribers and by publishes/s. */
#define SYS_TOP_ROOMS 10

/* True for a reserved room name (one clients may not publish to). */
static inline bool sys_room_reserved(struct span name)
{
    return name.len > 0 && name.base[0] == '$';
}

/* True for the stats room itself. Its members are counted engine-wide (room.c), and the
 * workers take and publish their numbers only while it has some: taking them walks every
 * connection slot and room of the worker, a sweep that no loop should pay every second for
 * nobody (at 100,000 connections a worker, milliseconds in front of whatever publish shares
 * that iteration). */
static inline bool sys_room_is_stats(struct span name)
{
    return name.len == sizeof(SYS_ROOM) - 1 && !memcmp(name.base, SYS_ROOM, name.len);
}

/* Called on every tick: publishes this worker's stats event when a second has passed and
 * someone, on any worker, subscribes to "$sys". The first event after a period without
 * subscribers covers that whole period (its interval_ms says how long). */
void sys_stats_tick(struct worker *w);

#endif
