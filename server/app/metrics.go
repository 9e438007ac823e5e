package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rein-ai/rein/server/internal/metrics"
)

// metricsListener is the optional plain listener of Options.MetricsAddr:
// GET /metrics and nothing else, without authentication, for a scraper on
// a private network or port. The metrics hold counts only (labels are
// route patterns, statuses and stream kinds; never a session id, a token
// or content), which is why serving them without a token is a choice an
// operator can make.
type metricsListener struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// start listens on addr ("" does nothing) and serves m until close.
func (l *metricsListener) start(addr string, m *metrics.Metrics, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	l.addr = ln.Addr().String()
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve metrics", slog.Any("err", err))
		}
	}()
	log.Info("serving metrics", slog.String("url", "http://"+l.addr+"/metrics"))
	return nil
}

// close stops the listener and waits for its goroutine.
func (l *metricsListener) close() {
	if l.srv == nil {
		return
	}
	_ = l.srv.Close() // scrapes are short; nothing to drain
	<-l.done
}

// MetricsAddr returns the address of the Options.MetricsAddr listener
// ("" when there is none), with the chosen port when it asked for 0.
func (a *App) MetricsAddr() string { return a.metrics.addr }
