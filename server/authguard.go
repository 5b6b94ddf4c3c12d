package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
)

// Throttling of failed authentication. Each source (the peer's uid on a
// UNIX socket, the remote IP address over TCP and TLS) has a bucket of
// authBurst token attempts that refills by one every authRefill. A failed
// token attempt takes one; with the bucket empty, token attempts from the
// source are refused without looking at the token, so guessing runs at
// one attempt per authRefill per source. Peer-credential and
// certificate authentication cannot be guessed and are never throttled,
// so a throttled uid still gets in with its peer credentials.
const (
	authBurst  = 10
	authRefill = time.Second
	// authLogInterval is the least time between two WARN lines about
	// one source; each line counts the failures since the last, and
	// failures not logged yet are logged once the interval has passed,
	// even if no more come.
	authLogInterval = 10 * time.Second
	// maxAuthSources bounds the sources tracked. When the table is full,
	// sources whose bucket is full again and that were not logged in the
	// last authLogInterval are forgotten (checked at most once per
	// authRefill); if none is, new sources share one bucket.
	maxAuthSources = 4096
	// sharedSource names the bucket shared by sources beyond
	// maxAuthSources.
	sharedSource = "other sources"
)

// ErrAuthThrottled is wrapped (with ErrAuth) by the refusal of a token
// attempt from a source with too many recent failures.
// Its text has no "server:" prefix, as it always follows ErrAuth's.
var ErrAuthThrottled = errors.New("too many failed authentications")

// authGuard throttles and logs failed authentication per source. Safe for
// concurrent use.
type authGuard struct {
	log   *slog.Logger
	now   func() time.Time                        // time.Now; tests replace it
	after func(time.Duration, func()) *time.Timer // time.AfterFunc; tests replace it

	failures, throttled atomic.Uint64 // totals, for Stats

	mu      sync.Mutex
	sources map[string]*authSource
	pruned  time.Time   // when sources was last scanned for entries to forget
	timer   *time.Timer // runs flush for failures not logged yet; nil if none is due
	stopped bool        // by stop: no more timers
}

type authSource struct {
	tokens    float64   // attempts left; refilled by elapsed time
	refilled  time.Time // when tokens was last brought up to date
	logged    time.Time // when the last WARN line for the source was written
	unlogged  int       // failures since that line
	throttled int       // of which refused without a check
	lastErr   error     // the latest failure's, for the next line
}

func newAuthGuard(log *slog.Logger) *authGuard {
	return &authGuard{log: log, now: time.Now, after: time.AfterFunc, sources: map[string]*authSource{}}
}

// refill brings s's bucket up to date at now.
func (s *authSource) refill(now time.Time) {
	s.tokens = min(authBurst, s.tokens+float64(now.Sub(s.refilled))/float64(authRefill))
	s.refilled = now
}

// wait returns how long source must wait before its next token attempt
// is checked; 0 if it may try now.
func (g *authGuard) wait(source string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.sources[source]
	if s == nil {
		if len(g.sources) < maxAuthSources {
			return 0
		}
		if s = g.sources[sharedSource]; s == nil {
			return 0
		}
	}
	s.refill(g.now())
	if s.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - s.tokens) * float64(authRefill))
}

// failed records a failed authentication from source: a token attempt
// (token) takes one from its bucket, and the failure is logged at WARN
// unless a line for the source was written in the last authLogInterval.
func (g *authGuard) failed(source string, token, throttled bool, why error) {
	g.failures.Add(1)
	if throttled {
		g.throttled.Add(1)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	s := g.source(source, now)
	if token && !throttled {
		s.refill(now)
		s.tokens = max(s.tokens-1, 0)
	}
	s.unlogged++
	if throttled {
		s.throttled++
	}
	s.lastErr = why
	if !s.logged.IsZero() && now.Sub(s.logged) < authLogInterval {
		g.scheduleLocked(s.logged.Add(authLogInterval).Sub(now)) // so the count is logged even if the failures stop
		return
	}
	g.logLocked(source, s, now)
}

// logLocked writes the WARN line for source's failures since its last
// line; under mu.
func (g *authGuard) logLocked(source string, s *authSource, now time.Time) {
	since := "first"
	if !s.logged.IsZero() {
		since = now.Sub(s.logged).Round(time.Millisecond).String()
	}
	g.log.Warn("authentication failed", "source", source, "failures", s.unlogged, "throttled", s.throttled,
		"since", since, "last_error", s.lastErr)
	s.logged, s.unlogged, s.throttled, s.lastErr = now, 0, 0, nil
}

// scheduleLocked makes sure flush runs within d; under mu.
func (g *authGuard) scheduleLocked(d time.Duration) {
	if g.timer == nil && !g.stopped {
		g.timer = g.after(max(d, 0), g.flush)
	}
}

// flush logs the failures of every source whose authLogInterval has
// passed since its last line, and schedules itself again for the others.
func (g *authGuard) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer = nil
	now := g.now()
	var next time.Duration
	for source, s := range g.sources {
		if s.unlogged == 0 {
			continue
		}
		if due := s.logged.Add(authLogInterval).Sub(now); due > 0 {
			if next == 0 || due < next {
				next = due
			}
			continue
		}
		g.logLocked(source, s, now)
	}
	if next > 0 {
		g.scheduleLocked(next)
	}
}

// stop ends the flush timer; failures after it are logged only as they
// happen. Called when the server closes.
func (g *authGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
}

// source returns source's entry, making room for it if needed; under mu.
func (g *authGuard) source(source string, now time.Time) *authSource {
	if s := g.sources[source]; s != nil {
		return s
	}
	if len(g.sources) >= maxAuthSources && now.Sub(g.pruned) >= authRefill {
		g.pruned = now // a scan at most once per authRefill, however many sources fail
		for k, s := range g.sources {
			s.refill(now)
			if k != sharedSource && s.tokens >= authBurst && now.Sub(s.logged) >= authLogInterval {
				delete(g.sources, k) // its unlogged failures stay counted in Stats
			}
		}
	}
	if len(g.sources) >= maxAuthSources {
		source = sharedSource
		if s := g.sources[source]; s != nil {
			return s
		}
	}
	s := &authSource{tokens: authBurst, refilled: now}
	g.sources[source] = s
	return s
}

// sourceOf names the source of nc for throttling: "uid:N" for a UNIX
// socket peer, the IP address for TCP and TLS, "unknown" otherwise.
func sourceOf(nc net.Conn) string {
	if uc, ok := nc.(*net.UnixConn); ok {
		if cred, err := transport.PeerCredOf(uc); err == nil {
			return fmt.Sprintf("uid:%d", cred.UID)
		}
		return "unix"
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return "unknown"
}

// authenticate is Auth.authenticate with per-source throttling of token
// attempts and rate-limited WARN logging of failures.
func (s *Server) authenticate(nc net.Conn, h *wire.Hello) (string, error) {
	source := sourceOf(nc)
	token := h.AuthMethod == wire.AuthToken
	if token {
		if wait := s.guard.wait(source); wait > 0 {
			err := fmt.Errorf("%w: %w from %s: try again in %s, with the right token (check the client's --token-file or DAEMONEYE_TOKEN)",
				ErrAuth, ErrAuthThrottled, source, wait.Round(time.Millisecond))
			s.guard.failed(source, true, true, err)
			return "", err
		}
	}
	id, err := s.opts.Auth.authenticate(nc, h)
	if err != nil {
		s.guard.failed(source, token, false, err)
	}
	return id, err
}
