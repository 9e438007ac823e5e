package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Server is a running rein-server process.
type Server struct {
	*Proc
	URL  string
	Port string
	DB   string
	name string // log prefix
	bin  string
	logf Logf
	args []string
	env  []string
}

// ServerConfig says how to start rein-server.
type ServerConfig struct {
	Bin string
	Dir string // the database goes here as rein.db, unless DB is set
	// DB, when set, is the --db the server gets instead (a postgres:// URL).
	DB   string
	Port string // "" or "0" picks a free port
	// Name prefixes its log lines (default "rein-server").
	Name string
	Args []string
	Env  []string
}

const listeningPrefix = "rein-server listening on "

// StartServer starts rein-server and waits for its "listening" line.
func StartServer(ctx context.Context, logf Logf, cfg ServerConfig) (*Server, error) {
	s := &Server{DB: filepath.Join(cfg.Dir, "rein.db"), name: cfg.Name, bin: cfg.Bin, logf: logf, args: cfg.Args, env: cfg.Env}
	if cfg.DB != "" {
		s.DB = cfg.DB
	}
	if s.name == "" {
		s.name = "rein-server"
	}
	port := cfg.Port
	if port == "" {
		port = "0"
	}
	if err := s.start(ctx, port); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, port string) error {
	args := append([]string{"--host", "127.0.0.1", "--port", port, "--db", s.DB}, s.args...)
	p, err := Start(s.logf, s.name, s.env, s.bin, args...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	line, err := p.WaitLine(ctx, listeningPrefix)
	if err != nil {
		p.Kill()
		// Its last words say why (a refused flag, a database in use).
		out := p.Output()
		return fmt.Errorf("%w; its last output:\n%s", err, strings.Join(out[max(0, len(out)-5):], "\n"))
	}
	s.Proc = p
	s.URL = strings.TrimSpace(line[strings.Index(line, listeningPrefix)+len(listeningPrefix):])
	s.Port = s.URL[strings.LastIndex(s.URL, ":")+1:]
	return nil
}

// Restart starts the server again on the same port and database, after a
// Stop or a Kill.
func (s *Server) Restart(ctx context.Context) error {
	select {
	case <-s.Done():
	default:
		return fmt.Errorf("restart rein-server: still running")
	}
	return s.start(ctx, s.Port)
}
