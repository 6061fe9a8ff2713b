/* frame_cache_test.c - the per-thread frame block cache (engine/frame.c): blocks come in 64-byte
 * classes up to 1 KiB, a freed block serves the next allocation of its class on the same thread
 * and no other, large frames are not cached, a thread that never turned the cache on does not
 * keep blocks, and frame_cache_off gives everything back (the ASan build's leak checker sees a
 * block it kept). Built with RINGCAST_FRAME_CACHE_FORCE so the sanitizer builds test the cache
 * too. */
#include "unit.h"
#include "engine/frame.h"

#include <pthread.h>
#include <stdlib.h>

static void test_classes(void)
{
    size_t base = sizeof(struct frame) + WS_MAX_HEADER_UNMASKED;
    size_t first = (base + 63) / 64 * 64; /* the smallest class: the header and nothing more */
    CHECK_EQ(frame_size_class(0, 0), first);
    CHECK_EQ(frame_size_class(first - base, 0), first);
    CHECK_EQ(frame_size_class(first - base + 1, 0), first + 64);
    CHECK_EQ(frame_size_class(100, 20), (base + 120 + 63) / 64 * 64);
    CHECK_EQ(frame_size_class(FRAME_CACHE_BLOCK_MAX - base, 0), FRAME_CACHE_BLOCK_MAX);
    CHECK_EQ(frame_size_class(FRAME_CACHE_BLOCK_MAX - base + 1, 0), FRAME_CACHE_BLOCK_MAX + 1);
    struct frame *f = frame_alloc(300, 12);
    CHECK(f != NULL);
    f->room.len = 12; /* as home_publish sets it */
    CHECK_EQ(frame_block_size(f), frame_size_class(300, 12));
    frame_release(f);
}

static void test_reuse_same_class_only(void)
{
    frame_cache_on();
    struct frame *f = frame_alloc(200, 0);     /* 250 bytes with the header: the 256 class */
    struct frame *other = frame_alloc(600, 0); /* another class, held */
    CHECK(f && other);
    void *p = f;
    frame_ref(f, 5);
    frame_unref(f, 5);
    frame_release(f);
    struct frame *g = frame_alloc(600, 0); /* a different class: not f's block */
    CHECK(g != p);
    struct frame *h = frame_alloc(205, 0); /* 255 bytes: the same 64-byte class, f's block */
    CHECK(h == p);
    CHECK_EQ(h->len, 0);
    CHECK_EQ(h->cap, 205);
    CHECK(h->room.base == NULL && h->room.len == 0);
    frame_release(g);
    frame_release(h);
    frame_release(other);
    frame_cache_off();
}

static void test_room_name_frames(void)
{
    frame_cache_on();
    size_t cap = 100, room = 40;
    struct frame *f = frame_alloc(cap, room);
    void *p = f;
    f->room = (struct span){(const char *)f->data + cap, room};
    frame_release(f); /* its class counts the room name */
    struct frame *g = frame_alloc(cap + room, 0);
    CHECK(g == p);
    frame_release(g);
    frame_cache_off();
}

static void test_large_not_cached(void)
{
    frame_cache_on();
    /* Many large frames freed and allocated again: nothing is kept for them (the leak checker
     * and the class arithmetic above cover the rest; here only that it works). */
    for (int i = 0; i < 300; i++) {
        struct frame *f = frame_alloc(4096, 0);
        CHECK(f != NULL);
        frame_release(f);
    }
    /* More small frees than a class keeps: the surplus goes to free(). */
    struct frame *v[300];
    for (int i = 0; i < 300; i++)
        v[i] = frame_alloc(100, 0);
    for (int i = 0; i < 300; i++)
        frame_release(v[i]);
    frame_cache_off();
}

static void *uncached_thread(void *arg)
{
    (void)arg;
    /* Never turned on: a block freed here is not kept, so frame_cache_off has nothing to do
     * and nothing leaks. */
    struct frame *f = frame_alloc(100, 0);
    frame_release(f);
    return NULL;
}

static void *cached_thread(void *arg)
{
    struct frame *f = arg;
    frame_cache_on();
    frame_release(f); /* a frame made on the main thread dies here: this thread keeps it */
    struct frame *g = frame_alloc(100, 0);
    int same = (void *)g == (void *)f;
    frame_release(g);
    frame_cache_off();
    return (void *)(intptr_t)same;
}

static void test_threads(void)
{
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, uncached_thread, NULL), 0);
    pthread_join(t, NULL);
    struct frame *f = frame_alloc(100, 0);
    void *same = NULL;
    CHECK_EQ(pthread_create(&t, NULL, cached_thread, f), 0);
    pthread_join(t, &same);
    CHECK(same == (void *)1);
}

int main(void)
{
    RUN(test_classes);
    RUN(test_reuse_same_class_only);
    RUN(test_room_name_frames);
    RUN(test_large_not_cached);
    RUN(test_threads);
    return unit_report("frame_cache");
}
