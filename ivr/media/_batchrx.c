/* The caller RTP receive path of every call on one event loop, in batches: the compiled half of
 * ivr/media/batchrx.py (which documents the design; read it first).
 *
 * One epoll set holds every call's RTP socket; the event loop watches the set's own descriptor, so one
 * callback per loop iteration reads every socket that is ready, with one recvmmsg() per socket. A call's
 * socket is a Lane. While its session has armed it, the lane takes the in-order path itself: a datagram
 * from the latched source with a plain RTP header, the audio payload type, the stream's SSRC and exactly
 * the next sequence number and timestamp. It appends the payload to the frame being assembled, keeps the
 * RFC 3550 A.8 jitter and the counters the session takes when it needs them (sync, disarm), and calls
 * on_audio once per whole frame, decoded as audioop would (one Python call per frame, not per packet).
 * A datagram from any other source is counted (strict RTP) and dropped. Every other datagram goes to
 * on_datagram(data, addr) unchanged, and the session disarms the lane before it handles it in Python.
 *
 * Paced reads (a Receiver made with pace_ms > 0): once an armed lane has handed on a frame, its socket
 * leaves the epoll set's attention (events 0) and the lane waits on a millisecond wheel until the packet
 * that completes the next frame is due, plus pace_ms. Then one recvmmsg() takes the whole frame's packets,
 * with the kernel's arrival time of each (SO_TIMESTAMPNS), so the jitter is what it would have been. A read
 * that comes up short (late or lost audio, the caller gone quiet) puts the socket back under epoll until
 * the frame completes. So one system call reads a frame instead of one per packet; the frame leaves at most
 * pace_ms after its last packet arrived, and anything else (DTMF, comfort noise) at most a frame late.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BATCH 16         /* datagrams per recvmmsg() */
#define SLOT 65536       /* per datagram: any UDP datagram fits whole, as in the Python path */
#define ROOM 160         /* a lane's frame buffer beyond the frame: a 20 ms packet; grown for a longer one */
#define MAX_EVENTS 1024  /* ready sockets per epoll_wait() */
#define MAX_ROUNDS 4     /* epoll_wait() rounds per receive() when every slot came back full */
#define HEADER 12
#define WHEEL 512        /* milliseconds the pacing wheel spans; a lane waits at most a frame, far less */
#define CONTROL 64       /* per datagram: room for its SCM_TIMESTAMPNS */

enum { PASSTHROUGH = 0, ULAW = 1, ALAW = 2 }; /* what on_audio gets: the G.711 as received, or PCM16 */

static int16_t ulaw_pcm[256], alaw_pcm[256];

/* ITU-T G.711 expansion, as the Sun reference code (and audioop's tables built from it) computes it. */
static void
build_tables(void)
{
    for (int i = 0; i < 256; i++) {
        int u = ~i & 0xFF;
        int t = ((u & 0x0F) << 3) + 0x84;
        t <<= (u & 0x70) >> 4;
        ulaw_pcm[i] = (int16_t)((u & 0x80) ? (0x84 - t) : (t - 0x84));
        int a = i ^ 0x55;
        int seg = (a & 0x70) >> 4;
        int v = (a & 0x0F) << 4;
        if (seg == 0)
            v += 8;
        else
            v = (v + 0x108) << (seg - 1);
        alaw_pcm[i] = (int16_t)((a & 0x80) ? v : -v);
    }
}

typedef struct ReceiverObject ReceiverObject;
typedef struct LaneObject LaneObject;

struct LaneObject {
    PyObject_HEAD
    ReceiverObject *receiver; /* NULL once closed */
    int fd;
    PyObject *on_datagram;
    PyObject *on_audio;
    int armed;
    int codec;
    /* the latched source, as a socket address */
    int family;
    struct sockaddr_in src4;
    struct sockaddr_in6 src6;
    /* what the in-order path expects next */
    uint8_t payload_type;
    uint32_t ssrc;
    uint16_t next_seq;
    uint32_t next_ts;
    /* the frame being assembled */
    unsigned char *buf;
    Py_ssize_t cap, frame, held;
    /* since the session last took them */
    long packets, wraps, samples, foreign;
    double arrival, jitter, transit, rate;
    int has_transit;
    /* paced reads */
    long completed;          /* frames handed on, ever */
    Py_ssize_t packet;       /* samples in the last in-order packet */
    int parked;              /* out of epoll's attention, waiting on the wheel */
    int retried;             /* the paced read of this frame came up short once already */
    double margin;           /* ms after the frame's last packet is due: pace_ms, more for a jittery caller */
    int64_t due_ms;          /* its wheel slot's time, while parked */
    LaneObject *wnext, *wprev;
};

struct ReceiverObject {
    PyObject_HEAD
    int epfd;
    PyObject *on_error;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage names[BATCH];
    unsigned char *bufs;
    /* paced reads (pace_ms > 0) */
    int pace_ms;
    int tfd;                 /* a 1 ms timerfd in the epoll set while any lane is parked */
    long parked;
    int64_t now_ms, last_ms; /* the wheel has run up to last_ms */
    double real_to_loop;     /* added to a kernel timestamp (CLOCK_REALTIME) gives loop time */
    LaneObject *wheel[WHEEL];
    unsigned char controls[BATCH][CONTROL];
    /* what the reads came to, for the metrics */
    unsigned long long reads, datagrams, paced_reads, short_reads;
};

static PyTypeObject LaneType;
static PyTypeObject ReceiverType;

/* ---- the pacing wheel ---- */

static void
wheel_remove(ReceiverObject *r, LaneObject *lane)
{
    if (lane->due_ms < 0)
        return;
    if (lane->wprev != NULL)
        lane->wprev->wnext = lane->wnext;
    else
        r->wheel[lane->due_ms & (WHEEL - 1)] = lane->wnext;
    if (lane->wnext != NULL)
        lane->wnext->wprev = lane->wprev;
    lane->wnext = lane->wprev = NULL;
    lane->due_ms = -1;
}

static void
wheel_insert(ReceiverObject *r, LaneObject *lane, int64_t due_ms)
{
    LaneObject **head = &r->wheel[due_ms & (WHEEL - 1)];
    lane->due_ms = due_ms;
    lane->wprev = NULL;
    lane->wnext = *head;
    if (*head != NULL)
        (*head)->wprev = lane;
    *head = lane;
}

static void
set_timer(ReceiverObject *r, int on)
{
    struct itimerspec spec;
    memset(&spec, 0, sizeof(spec));
    if (on)
        spec.it_interval.tv_nsec = spec.it_value.tv_nsec = 1000000;
    timerfd_settime(r->tfd, 0, &spec, NULL);
}

/* Back under epoll: every datagram is read as it arrives. */
static void
unpark(ReceiverObject *r, LaneObject *lane)
{
    wheel_remove(r, lane);
    if (!lane->parked)
        return;
    lane->parked = 0;
    if (lane->fd >= 0) {
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = lane};
        epoll_ctl(r->epfd, EPOLL_CTL_MOD, lane->fd, &event);
    }
    if (--r->parked == 0)
        set_timer(r, 0);
}

/* Out of epoll's attention until `due_ms` (loop time), on the wheel. */
static void
park_until(ReceiverObject *r, LaneObject *lane, int64_t due_ms)
{
    if (due_ms <= r->now_ms)
        due_ms = r->now_ms + 1;
    if (due_ms > r->now_ms + WHEEL - 1)
        due_ms = r->now_ms + WHEEL - 1;
    if (!lane->parked) {
        struct epoll_event event = {.events = 0, .data.ptr = lane};
        if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, lane->fd, &event) < 0)
            return; /* it stays under epoll */
        lane->parked = 1;
        if (r->parked++ == 0) {
            r->last_ms = r->now_ms;
            set_timer(r, 1);
        }
    }
    wheel_remove(r, lane);
    wheel_insert(r, lane, due_ms);
}

/* Parked until the packet that completes the next frame is due, plus the lane's margin. */
static void
park(ReceiverObject *r, LaneObject *lane)
{
    Py_ssize_t packet = lane->packet > 0 ? lane->packet : 1;
    Py_ssize_t packets = (lane->frame - lane->held + packet - 1) / packet;
    double due = lane->arrival + (double)(packets * packet) / lane->rate + lane->margin / 1000.0;
    park_until(r, lane, (int64_t)ceil(due * 1000.0));
}

/* ---- Lane ---- */

static int
lane_traverse(LaneObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_datagram);
    Py_VISIT(self->on_audio);
    Py_VISIT((PyObject *)self->receiver);
    return 0;
}

static int
lane_clear(LaneObject *self)
{
    Py_CLEAR(self->on_datagram);
    Py_CLEAR(self->on_audio);
    Py_CLEAR(self->receiver);
    return 0;
}

static void
lane_dealloc(LaneObject *self)
{
    PyObject_GC_UnTrack(self);
    lane_clear(self);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
lane_reserve(LaneObject *self, Py_ssize_t need)
{
    if (need <= self->cap)
        return 0;
    /* The first one exactly (a lane per call: a frame and a packet, not 4 KB), then doubling. */
    Py_ssize_t cap = self->cap ? self->cap * 2 : need;
    if (cap < need)
        cap = need;
    unsigned char *buf = PyMem_Realloc(self->buf, cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buf = buf;
    self->cap = cap;
    return 0;
}

/* The counters since the session last took them, then zeroed: packets, wraps, next sequence number,
 * next timestamp, samples, arrival, jitter, transit, foreign. */
static PyObject *
lane_take(LaneObject *self)
{
    PyObject *out = Py_BuildValue("(llikldddl)", self->packets, self->wraps, (int)self->next_seq,
                                  (unsigned long)self->next_ts, self->samples, self->arrival, self->jitter,
                                  self->transit, self->foreign);
    if (out != NULL)
        self->packets = self->wraps = self->samples = self->foreign = 0;
    return out;
}

static int
parse_source(LaneObject *self, PyObject *source)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyTuple_Check(source)) {
        PyErr_SetString(PyExc_TypeError, "source must be an address tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(source, "si|II", &host, &port, &flowinfo, &scope_id))
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(&self->src4, 0, sizeof(self->src4));
    memset(&self->src6, 0, sizeof(self->src6));
    if (PyTuple_GET_SIZE(source) == 2 && inet_pton(AF_INET, host, &self->src4.sin_addr) == 1) {
        self->family = AF_INET;
        self->src4.sin_port = htons((uint16_t)port);
        return 0;
    }
    if (PyTuple_GET_SIZE(source) == 4 && inet_pton(AF_INET6, host, &self->src6.sin6_addr) == 1) {
        self->family = AF_INET6;
        self->src6.sin6_port = htons((uint16_t)port);
        self->src6.sin6_flowinfo = htonl(flowinfo);
        self->src6.sin6_scope_id = scope_id;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not an IP address tuple: %R", source);
    return -1;
}

static PyObject *
lane_arm(LaneObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"source", "payload_type", "ssrc",    "sequence", "timestamp", "frame",
                             "held",   "jitter",       "transit", "codec",    NULL};
    PyObject *source, *transit;
    int payload_type, codec;
    unsigned long ssrc, timestamp;
    int sequence;
    Py_ssize_t frame;
    Py_buffer held;
    double jitter;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oikikny*dOi", kwlist, &source, &payload_type, &ssrc,
                                     &sequence, &timestamp, &frame, &held, &jitter, &transit, &codec))
        return NULL;
    PyObject *result = NULL;
    if (self->receiver == NULL) {
        PyErr_SetString(PyExc_ValueError, "the lane is closed");
        goto done;
    }
    if (frame < 1 || held.len >= frame || payload_type < 0 || payload_type > 127 || codec < PASSTHROUGH ||
        codec > ALAW) {
        PyErr_SetString(PyExc_ValueError, "a frame of at least one sample, more than what is held, a codec");
        goto done;
    }
    if (parse_source(self, source) < 0 || lane_reserve(self, frame + ROOM) < 0)
        goto done;
    if (transit == Py_None) {
        self->has_transit = 0;
        self->transit = 0.0;
    } else {
        self->transit = PyFloat_AsDouble(transit);
        if (self->transit == -1.0 && PyErr_Occurred())
            goto done;
        self->has_transit = 1;
    }
    memcpy(self->buf, held.buf, held.len);
    self->held = held.len;
    self->frame = frame;
    self->payload_type = (uint8_t)payload_type;
    self->ssrc = (uint32_t)ssrc;
    self->next_seq = (uint16_t)sequence;
    self->next_ts = (uint32_t)timestamp;
    self->jitter = jitter;
    self->codec = codec;
    self->packets = self->wraps = self->samples = self->foreign = 0;
    self->armed = 1;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&held);
    return result;
}

static PyObject *
lane_sync(LaneObject *self, PyObject *Py_UNUSED(ignored))
{
    return lane_take(self);
}

static PyObject *
lane_disarm(LaneObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *held = PyBytes_FromStringAndSize((const char *)self->buf, self->armed ? self->held : 0);
    if (held == NULL)
        return NULL;
    PyObject *counters = lane_take(self);
    if (counters == NULL) {
        Py_DECREF(held);
        return NULL;
    }
    self->armed = 0;
    self->held = 0;
    if (self->receiver != NULL)
        unpark(self->receiver, self); /* Python reads every datagram now: as it arrives */
    PyObject *out = PyTuple_Pack(2, held, counters);
    Py_DECREF(held);
    Py_DECREF(counters);
    return out;
}

static PyObject *
lane_close(LaneObject *self, PyObject *Py_UNUSED(ignored))
{
    ReceiverObject *receiver = self->receiver;
    if (receiver == NULL)
        Py_RETURN_NONE;
    unpark(receiver, self);
    if (self->fd >= 0)
        epoll_ctl(receiver->epfd, EPOLL_CTL_DEL, self->fd, NULL); /* EBADF if closed first: gone anyway */
    self->fd = -1;
    self->armed = 0;
    lane_clear(self);
    Py_DECREF(self); /* the reference the epoll registration held */
    Py_RETURN_NONE;
}

static PyObject *
lane_get_armed(LaneObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->armed);
}

static PyObject *
lane_get_arrival(LaneObject *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->arrival);
}

static PyObject *
lane_get_held(LaneObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->armed ? self->held : 0);
}

static PyObject *
lane_get_pending(LaneObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->samples);
}

static PyObject *
lane_get_due(LaneObject *self, void *Py_UNUSED(closure))
{
    if (!self->parked || self->due_ms < 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble((double)self->due_ms / 1000.0);
}

static PyMethodDef lane_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))lane_arm, METH_VARARGS | METH_KEYWORDS,
     "Take the in-order path from this state on."},
    {"sync", (PyCFunction)lane_sync, METH_NOARGS, "The counters since last taken; stays armed."},
    {"disarm", (PyCFunction)lane_disarm, METH_NOARGS, "(held bytes, counters); every datagram to Python."},
    {"close", (PyCFunction)lane_close, METH_NOARGS, "Leave the receiver (before the socket is closed)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef lane_getset[] = {
    {"armed", (getter)lane_get_armed, NULL, "Whether the in-order path is taken here.", NULL},
    {"arrival", (getter)lane_get_arrival, NULL, "The loop time of the last in-order packet.", NULL},
    {"held", (getter)lane_get_held, NULL, "Samples of the frame being assembled here.", NULL},
    {"pending", (getter)lane_get_pending, NULL, "Samples taken in order since the counters were taken.", NULL},
    {"due", (getter)lane_get_due, NULL, "Loop time of the next paced read, or None: read on arrival.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ivr.media._batchrx.Lane",
    .tp_basicsize = sizeof(LaneObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One call's RTP socket in a Receiver.",
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear,
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_methods = lane_methods,
    .tp_getset = lane_getset,
};

/* ---- the receive path ---- */

static int
from_source(LaneObject *lane, const struct sockaddr_storage *name, socklen_t len)
{
    if (lane->family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        return len >= sizeof(*a) && a->sin_family == AF_INET && a->sin_port == lane->src4.sin_port &&
               a->sin_addr.s_addr == lane->src4.sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
    return len >= sizeof(*a) && a->sin6_family == AF_INET6 && a->sin6_port == lane->src6.sin6_port &&
           a->sin6_flowinfo == lane->src6.sin6_flowinfo && a->sin6_scope_id == lane->src6.sin6_scope_id &&
           memcmp(&a->sin6_addr, &lane->src6.sin6_addr, sizeof(a->sin6_addr)) == 0;
}

/* The address as the socket module gives it: (host, port) or (host, port, flowinfo, scope_id). */
static PyObject *
address(const struct sockaddr_storage *name, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (name->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (name->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port), (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static void
report(ReceiverObject *receiver)
{
    /* A session's bug must not stop the other calls' audio: hand the exception on and carry on. */
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    if (receiver->on_error != NULL && receiver->on_error != Py_None && value != NULL) {
        PyObject *r = PyObject_CallOneArg(receiver->on_error, value);
        if (r == NULL)
            PyErr_WriteUnraisable(receiver->on_error);
        Py_XDECREF(r);
    } else if (value != NULL) {
        PyErr_Restore(type, value, traceback);
        PyErr_WriteUnraisable(NULL);
        return;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

static void
in_order(ReceiverObject *receiver, LaneObject *lane, const unsigned char *payload, Py_ssize_t size, uint16_t seq,
         uint32_t ts, double now)
{
    lane->packets++;
    if (seq == 0)
        lane->wraps++;
    lane->samples += size;
    /* RFC 3550 A.8, in timestamp units, exactly as RtpStats.record computes it */
    double transit = now * lane->rate - (double)ts;
    if (lane->has_transit) {
        double d = fabs(transit - lane->transit);
        if (d < 2147483648.0)
            lane->jitter += (d - lane->jitter) / 16.0;
    }
    lane->transit = transit;
    lane->has_transit = 1;
    lane->arrival = now;
    lane->next_seq = (uint16_t)(seq + 1);
    lane->next_ts = ts + (uint32_t)size;
    lane->packet = size;
    memcpy(lane->buf + lane->held, payload, size); /* reserved for it in datagram() */
    lane->held += size;
    if (lane->held < lane->frame)
        return;
    Py_ssize_t whole = lane->held - lane->held % lane->frame;
    PyObject *frame;
    if (lane->codec == PASSTHROUGH) {
        frame = PyBytes_FromStringAndSize((const char *)lane->buf, whole);
    } else {
        frame = PyBytes_FromStringAndSize(NULL, whole * 2);
        if (frame != NULL) {
            const int16_t *table = lane->codec == ULAW ? ulaw_pcm : alaw_pcm;
            int16_t *pcm = (int16_t *)PyBytes_AS_STRING(frame); /* native order, as audioop writes it */
            for (Py_ssize_t i = 0; i < whole; i++)
                pcm[i] = table[lane->buf[i]];
        }
    }
    if (frame == NULL) {
        report(receiver);
        return;
    }
    memmove(lane->buf, lane->buf + whole, lane->held - whole);
    lane->held -= whole;
    lane->completed++;
    PyObject *callback = lane->on_audio;
    Py_INCREF(callback);
    PyObject *r = PyObject_CallOneArg(callback, frame);
    Py_DECREF(callback);
    Py_DECREF(frame);
    if (r == NULL)
        report(receiver);
    Py_XDECREF(r);
}

static void
datagram(ReceiverObject *receiver, LaneObject *lane, const unsigned char *data, Py_ssize_t size,
         const struct sockaddr_storage *name, socklen_t namelen, double now)
{
    if (lane->armed) {
        if (!from_source(lane, name, namelen)) {
            lane->foreign++; /* strict RTP: not even parsed */
            return;
        }
        if (size > HEADER && data[0] == 0x80 && (data[1] & 0x7F) == lane->payload_type) {
            uint16_t seq = (uint16_t)((data[2] << 8) | data[3]);
            uint32_t ts = ((uint32_t)data[4] << 24) | ((uint32_t)data[5] << 16) | ((uint32_t)data[6] << 8) |
                          data[7];
            uint32_t ssrc = ((uint32_t)data[8] << 24) | ((uint32_t)data[9] << 16) |
                            ((uint32_t)data[10] << 8) | data[11];
            if (seq == lane->next_seq && ts == lane->next_ts && ssrc == lane->ssrc) {
                if (lane_reserve(lane, lane->held + size - HEADER) < 0) {
                    report(receiver); /* out of memory: this packet is lost */
                    return;
                }
                in_order(receiver, lane, data + HEADER, size - HEADER, seq, ts, now);
                return;
            }
        }
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, size);
    PyObject *addr = bytes == NULL ? NULL : address(name, namelen);
    if (addr == NULL) {
        Py_XDECREF(bytes);
        report(receiver);
        return;
    }
    PyObject *callback = lane->on_datagram;
    Py_INCREF(callback);
    PyObject *r = PyObject_CallFunctionObjArgs(callback, bytes, addr, NULL);
    Py_DECREF(callback);
    Py_DECREF(bytes);
    Py_DECREF(addr);
    if (r == NULL)
        report(receiver);
    Py_XDECREF(r);
}

/* When the kernel received it (SO_TIMESTAMPNS), in loop time; `now` without a timestamp. */
static double
arrival(ReceiverObject *receiver, struct msghdr *h, double now)
{
    if (receiver->pace_ms <= 0)
        return now;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + receiver->real_to_loop;
        }
    }
    return now;
}

/* Every datagram waiting on one lane's socket, BATCH per system call. */
static long
read_socket(ReceiverObject *receiver, LaneObject *lane, double now)
{
    long count = 0;
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            receiver->msgs[i].msg_hdr.msg_namelen = sizeof(receiver->names[i]);
            receiver->msgs[i].msg_hdr.msg_flags = 0;
            if (receiver->pace_ms > 0)
                receiver->msgs[i].msg_hdr.msg_controllen = CONTROL; /* the kernel shrinks it to what it wrote */
        }
        int got = recvmmsg(lane->fd, receiver->msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return count; /* EAGAIN, or an error the next read reports again */
        }
        for (int i = 0; i < got; i++) {
            if (lane->receiver == NULL)
                return count; /* a callback closed the call */
            datagram(receiver, lane, receiver->bufs + (size_t)i * SLOT, receiver->msgs[i].msg_len, &receiver->names[i],
                     receiver->msgs[i].msg_hdr.msg_namelen, arrival(receiver, &receiver->msgs[i].msg_hdr, now));
            count++;
        }
        if (got < BATCH)
            return count;
    }
}

/* A lane's socket read (`timed`: by the wheel, its frame due), then where it waits for the next. */
static long
read_lane(ReceiverObject *receiver, LaneObject *lane, double now, int timed)
{
    long before = lane->completed;
    long count = read_socket(receiver, lane, now);
    receiver->reads++;
    receiver->datagrams += (unsigned long long)count;
    receiver->paced_reads += (unsigned long long)timed;
    int pace = receiver->pace_ms;
    if (pace > 0 && lane->receiver != NULL) {
        if (!lane->armed) {
            unpark(receiver, lane);
        } else if (lane->completed != before) {
            if (timed && lane->margin > pace)
                lane->margin -= 0.1; /* a steady caller earns its margin back, a frame at a time */
            lane->retried = 0;
            park(receiver, lane);
        } else if (timed) {
            /* The frame did not come whole: a late packet. Wait longer for this caller's frames from now on,
             * look again once, then take the rest as it arrives. */
            receiver->short_reads++;
            if (lane->margin < 3 * pace)
                lane->margin += pace;
            if (!lane->retried) {
                lane->retried = 1;
                park_until(receiver, lane, receiver->now_ms + pace);
            } else {
                lane->retried = 0;
                unpark(receiver, lane);
            }
        }
    }
    return count;
}

/* The parked lanes whose time has come, up to now_ms. */
static long
run_wheel(ReceiverObject *r, double now)
{
    long count = 0;
    if (r->parked == 0) {
        r->last_ms = r->now_ms;
        return 0;
    }
    if (r->now_ms - r->last_ms > WHEEL)
        r->last_ms = r->now_ms - WHEEL; /* a stalled loop: every slot once */
    while (r->last_ms < r->now_ms) {
        int64_t ms = ++r->last_ms;
        for (;;) {
            LaneObject *lane = r->wheel[ms & (WHEEL - 1)];
            while (lane != NULL && lane->due_ms > ms)
                lane = lane->wnext; /* a later turn of the wheel */
            if (lane == NULL)
                break;
            wheel_remove(r, lane);
            Py_INCREF(lane); /* a callback may close it */
            if (lane->receiver != NULL)
                count += read_lane(r, lane, now, 1);
            Py_DECREF(lane);
        }
    }
    return count;
}

/* ---- Receiver ---- */

static PyObject *
receiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"on_error", "pace_ms", NULL};
    PyObject *on_error = Py_None;
    int pace_ms = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Oi", kwlist, &on_error, &pace_ms))
        return NULL;
    if (pace_ms < 0 || pace_ms > 100) {
        PyErr_SetString(PyExc_ValueError, "pace_ms is 0 (off) to 100");
        return NULL;
    }
    ReceiverObject *self = (ReceiverObject *)type->tp_alloc(type, 0); /* zeroed: the wheel is empty */
    if (self == NULL)
        return NULL;
    self->epfd = self->tfd = -1;
    self->pace_ms = pace_ms;
    self->bufs = PyMem_Malloc((size_t)BATCH * SLOT);
    if (self->bufs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    if (pace_ms > 0) {
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL: the timer, not a lane */
        self->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (self->tfd < 0 || epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->tfd, &event) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(self);
            return NULL;
        }
    }
    for (int i = 0; i < BATCH; i++) {
        self->iov[i].iov_base = self->bufs + (size_t)i * SLOT;
        self->iov[i].iov_len = SLOT;
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
        self->msgs[i].msg_hdr.msg_name = &self->names[i];
        if (pace_ms > 0)
            self->msgs[i].msg_hdr.msg_control = self->controls[i];
    }
    Py_INCREF(on_error);
    self->on_error = on_error;
    return (PyObject *)self;
}

static int
receiver_traverse(ReceiverObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_error);
    return 0;
}

static int
receiver_clear(ReceiverObject *self)
{
    Py_CLEAR(self->on_error);
    return 0;
}

static void
receiver_dealloc(ReceiverObject *self)
{
    PyObject_GC_UnTrack(self);
    receiver_clear(self);
    if (self->epfd >= 0)
        close(self->epfd);
    if (self->tfd >= 0)
        close(self->tfd);
    PyMem_Free(self->bufs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
receiver_add(ReceiverObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "on_datagram", "on_audio", "clock_rate", NULL};
    int fd;
    PyObject *on_datagram, *on_audio;
    double rate = 8000.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOO|d", kwlist, &fd, &on_datagram, &on_audio, &rate))
        return NULL;
    if (!PyCallable_Check(on_datagram) || !PyCallable_Check(on_audio)) {
        PyErr_SetString(PyExc_TypeError, "on_datagram and on_audio must be callable");
        return NULL;
    }
    LaneObject *lane = PyObject_GC_New(LaneObject, &LaneType);
    if (lane == NULL)
        return NULL;
    lane->receiver = NULL;
    lane->fd = fd;
    lane->on_datagram = Py_NewRef(on_datagram);
    lane->on_audio = Py_NewRef(on_audio);
    lane->armed = 0;
    lane->codec = PASSTHROUGH;
    lane->family = AF_INET;
    memset(&lane->src4, 0, sizeof(lane->src4));
    memset(&lane->src6, 0, sizeof(lane->src6));
    lane->payload_type = 0;
    lane->ssrc = 0;
    lane->next_seq = 0;
    lane->next_ts = 0;
    lane->buf = NULL;
    lane->cap = lane->frame = lane->held = 0;
    lane->packets = lane->wraps = lane->samples = lane->foreign = 0;
    lane->arrival = lane->jitter = lane->transit = 0.0;
    lane->rate = rate;
    lane->has_transit = 0;
    lane->completed = 0;
    lane->packet = 0;
    lane->parked = 0;
    lane->retried = 0;
    lane->margin = self->pace_ms;
    lane->due_ms = -1;
    lane->wnext = lane->wprev = NULL;
    PyObject_GC_Track(lane);
    if (self->pace_ms > 0) {
        int on = 1; /* arrival times for datagrams read after they came */
        if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(lane);
            return NULL;
        }
    }
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = lane};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &event) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(lane);
        return NULL;
    }
    lane->receiver = (ReceiverObject *)Py_NewRef((PyObject *)self);
    Py_INCREF(lane); /* held by the registration until close() */
    return (PyObject *)lane;
}

static PyObject *
receiver_receive(ReceiverObject *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    struct epoll_event events[MAX_EVENTS];
    long count = 0;
    if (self->pace_ms > 0) {
        /* Loop time is CLOCK_MONOTONIC (asyncio's and uvloop's): read it fresh, not as the loop cached it. */
        struct timespec mono, real;
        clock_gettime(CLOCK_MONOTONIC, &mono);
        clock_gettime(CLOCK_REALTIME, &real);
        double fresh = (double)mono.tv_sec + (double)mono.tv_nsec * 1e-9;
        self->real_to_loop = fresh - ((double)real.tv_sec + (double)real.tv_nsec * 1e-9);
        self->now_ms = (int64_t)floor(fresh * 1000.0);
        count += run_wheel(self, now);
    }
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int ready = epoll_wait(self->epfd, events, MAX_EVENTS, 0);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        /* A callback may close any call, this one or another: keep every lane of the batch alive. */
        for (int i = 0; i < ready; i++)
            Py_XINCREF((PyObject *)events[i].data.ptr);
        for (int i = 0; i < ready; i++) {
            LaneObject *lane = events[i].data.ptr;
            if (lane == NULL) {
                uint64_t expirations; /* the timer's ticks, only cleared: the wheel runs on the clock */
                ssize_t cleared = read(self->tfd, &expirations, sizeof(expirations));
                (void)cleared; /* EAGAIN: cleared already */
            } else if (lane->receiver != NULL) {
                count += read_lane(self, lane, now, 0);
            }
        }
        for (int i = 0; i < ready; i++)
            Py_XDECREF((PyObject *)events[i].data.ptr);
        if (ready < MAX_EVENTS)
            break;
    }
    return PyLong_FromLong(count);
}

static PyObject *
receiver_counters(ReceiverObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(KKKKl)", self->reads, self->datagrams, self->paced_reads, self->short_reads,
                         self->parked);
}

static PyObject *
receiver_fileno(ReceiverObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->epfd);
}

static PyMethodDef receiver_methods[] = {
    {"add", (PyCFunction)(void (*)(void))receiver_add, METH_VARARGS | METH_KEYWORDS,
     "A Lane for a bound UDP socket's descriptor."},
    {"receive", (PyCFunction)receiver_receive, METH_O, "Read every ready socket; `now` is the loop time."},
    {"fileno", (PyCFunction)receiver_fileno, METH_NOARGS, "The epoll descriptor, for the loop to watch."},
    {"counters", (PyCFunction)receiver_counters, METH_NOARGS,
     "(reads, datagrams, paced reads, paced reads that came up short, lanes parked now)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ivr.media._batchrx.Receiver",
    .tp_basicsize = sizeof(ReceiverObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Every call's RTP socket of one event loop, read in batches.",
    .tp_new = receiver_new,
    .tp_traverse = (traverseproc)receiver_traverse,
    .tp_clear = (inquiry)receiver_clear,
    .tp_dealloc = (destructor)receiver_dealloc,
    .tp_methods = receiver_methods,
};

static struct PyModuleDef batchrx_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ivr.media._batchrx",
    .m_doc = "Batched RTP receive for every call on one event loop (see ivr/media/batchrx.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__batchrx(void)
{
    if (PyType_Ready(&LaneType) < 0 || PyType_Ready(&ReceiverType) < 0)
        return NULL;
    build_tables();
    PyObject *module = PyModule_Create(&batchrx_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObjectRef(module, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    PyModule_AddIntConstant(module, "BATCH", BATCH);
    PyModule_AddIntConstant(module, "PASSTHROUGH", PASSTHROUGH);
    PyModule_AddIntConstant(module, "ULAW", ULAW);
    PyModule_AddIntConstant(module, "ALAW", ALAW);
    return module;
}
