package agentd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rein-ai/rein/agentd/internal/commandstream"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/agentd/internal/process"
	"github.com/rein-ai/rein/agentd/internal/uploader"
	"github.com/rein-ai/rein/protocol"
)

// agentCommandBuffer is how many commands may wait for the agent to read
// them. Commands come at human speed; an agent this far behind is stuck,
// and the abort escalation deals with stuck agents. Past it the loop
// holds the commands it has and reads no more from the command stream
// until the agent reads again: a command that did not fit cannot be
// dropped, since counting it as taken would move the cursor past a
// command the agent never got. (A variable for the tests.)
var agentCommandBuffer = 1024

// Test hooks (set through export_test.go; nil otherwise): they tell a
// test that agentd took a path no event shows, so that it acts then
// rather than after a sleep that a loaded machine outlasts.
var (
	// testHookReposting is called as the loop re-posts agent_started
	// after a command stream (re)connect, before the emit (which waits
	// while the queue is full), with the number of events queued.
	testHookReposting func(queued int)
	// testHookQueued is called with each event of the agent's once it
	// is queued.
	testHookQueued func(protocol.Event)
)

// supervisor runs the agent: one run per process lifetime, restarted after
// crashes, and owns everything that must stay consistent with the turn the
// agent is in.
type supervisor struct {
	opts Options
	log  *slog.Logger
	// instance is this agentd's instance id: the agent's environment
	// carries it (agentEnv) so the next agentd on the state dir can find
	// what the agent left running should this one die (sweepAgent).
	instance  string
	adapter   adapter // speaks opts.Protocol
	up        *uploader.Uploader
	commands  <-chan protocol.Command
	connected <-chan struct{}

	// streamDone and upDone deliver the command stream's and uploader's
	// Run results; once one is received it is kept in streamRes/upResult
	// and the channel is not read again.
	streamDone <-chan error
	upDone     <-chan error
	streamRes  *error
	upResult   *error

	runCtx    context.Context
	runCancel context.CancelFunc
	// ownCtx bounds the wait of agentd's own events (emit) for room in a
	// full queue: it ends with runCtx, and at the shutdown signal. They
	// are emitted from the loops that carry the shutdown through (the
	// agent's signals, its kill, the flush's deadline): an emit waiting
	// there for a server that is down would hold agentd for as long as
	// the server stays down. An event of agentd's own that finds no room
	// after that is logged as not queued; the queue it would have joined
	// is not delivered either (in memory), or the outbox is at
	// --outbox-max-bytes.
	ownCtx context.Context
	// giveUpAt is when the agent's last events stop waiting for room at
	// shutdown (watch's giveUp): the end of the agent's run, which agentd
	// emits after them (ended), waits no longer than they.
	giveUpAt time.Time
	// emitting counts the adapter's emits in progress, which wait while
	// the queue is full.
	emitting atomic.Int32
	// flushSpent: at shutdown the agent's last events waited on the
	// uploader (the server unreachable, the queue full) for all of
	// FlushTimeout after the agent exited, and were given up on (watch);
	// the uploader has had its time, and flush does not wait again.
	flushSpent bool
	// turnEnded wakes the loop when the agent ends a turn (abort done),
	// with the turn's id: the loop may read it only after the agent has
	// started the next turn, and an abort escalation is called off by the
	// end of the turn it was armed for, not of an earlier one.
	turnEnded chan string
	// cmds tracks commands until the agent took them (the cursor).
	cmds *commandLog
	// perms follows the requests the agent has waiting, for the answers
	// (permissions.go).
	perms *permissionLog
	// conv is the agent's conversation id, resumed by the next run.
	conv *conversation
	// outbox: events are kept on disk, so those not posted at shutdown
	// are not lost.
	outbox bool

	mu       sync.Mutex
	turnID   string
	turnOpen bool
	// started is the agent_started of the running agent, re-posted after
	// every command stream reconnect.
	started *protocol.Event
	// agentPid is the running agent's pid (0 between runs); baseline the
	// processes that ran when the open turn began; abortedTurn the turn
	// the user aborted. When the aborted turn ends, agentd kills what
	// the turn started and left running (reapTurnLocked).
	agentPid    int
	baseline    *processes
	abortedTurn string
	// promptSnaps are the processes that ran when each prompt not yet
	// started was handed to the agent, oldest first: a turn's baseline
	// is taken before the agent can act on its prompt.
	promptSnaps []*processes
}

// processes are the processes of the agent's at one moment, the ones an
// aborted turn's kill spares.
type processes struct {
	// below the agent.
	below map[int]bool
	// adopted by agentd (process.Adopted): what the agent started in a
	// session of its own and whose parent then exited is no longer
	// below the agent, and a turn's would escape its abort. nil when
	// they could not be listed: then none is killed.
	adopted map[int]bool
}

// agentRun is one process lifetime of the agent.
type agentRun struct {
	proc *process.Process
	cmds chan protocol.Command
	done chan struct{} // closed when serving ended and the process exited
	exit process.Exit
	// cancelled: agentd ended the turn (abort escalation or shutdown), so
	// an open turn is closed as cancelled rather than error.
	cancelled bool
	// resumed is the conversation the run was asked to resume ("" for a
	// new one); reports the conversation reports before it started.
	resumed string
	reports int
	// why says why agentd stopped the agent (nil if it did not):
	// agent_exited would otherwise show only the signal, as if the agent
	// had crashed. Set once, by stopping, from the run's goroutine (it
	// killed the agent on its own account) or the supervisor's loop (the
	// agent did not honour an abort or a shutdown in time).
	why atomic.Pointer[string]
}

// stopping records why agentd signals the agent, unless it signalled it
// already: the first signal is what stopped it. What follows is its
// answer, not the reason: an agent's stdout that ends after the
// shutdown's SIGTERM (or as its SIGKILL lands, before the exit is seen)
// brings the kill for a closed stdout, and agent_exited said "it closed
// its stdout but did not exit" of an agent agentd had stopped itself.
func (r *agentRun) stopping(why string) *string {
	if r.why.CompareAndSwap(nil, &why) {
		return &why
	}
	return nil
}

// calledOff forgets the reason an abort escalation recorded (p, from
// stopping) once the agent ended the turn after all: it was not stopped.
func (r *agentRun) calledOff(p *string) {
	if p != nil {
		r.why.CompareAndSwap(p, nil)
	}
}

// escalation is a queue of signals sent one KillStep apart.
type escalation struct {
	signals []syscall.Signal
	abort   bool    // an abort escalation, dropped when the turn ends
	turn    string  // the turn an abort escalation is for
	why     *string // the reason it recorded (stopping), if it was first
}

// run supervises until ctx is done (nil, after stopping the agent) or a
// fatal error from the command stream or the uploader.
func (s *supervisor) run(ctx context.Context) error {
	if s.adapter == nil {
		// Options.validate accepted the protocol: it is registered.
		s.adapter = adapters[s.opts.Protocol].build(&s.opts)
	}
	bo := commandstream.NewBackOff(s.opts.RestartDelay, s.opts.RestartDelayMax)
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		r, err := s.start()
		if errors.Is(err, errKilled) {
			// The caller is exiting without waiting for Run; should it
			// wait after all, Run stops as at shutdown.
			return nil
		}
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("%w: %w", ErrUsage, err)
			}
			s.log.Error("agent did not start", "err", err)
			s.emit(protocol.Event{Type: protocol.EventAgentExited, Error: err.Error()})
		} else {
			// Prompts the last agent never started (or that came while
			// none ran) go to this one.
			stop, fatal := s.watch(ctx, r, s.cmds.prompts())
			s.ended(r, stop)
			if stop {
				return fatal
			}
			if r.exit.Ran >= s.opts.HealthyRun {
				bo.Reset()
			}
		}
		wait := bo.NextBackOff()
		s.log.Warn("restarting agent", "in", wait)
		timer.Reset(wait)
	wait:
		for {
			select {
			case <-timer.C:
				break wait
			case c := <-s.commands:
				// A prompt waits for the next agent; an abort or a
				// permission answer was for the agent that died with
				// its turn.
				if s.cmds.received(c) {
					s.log.Info("command taken by the agent before agentd restarted; not given again", "id", c.ID, "type", c.Type)
				} else {
					s.dropForNoAgent(c)
				}
			case <-s.connected:
			case <-ctx.Done():
				return nil
			case err := <-s.streamDone:
				s.streamRes = &err
				s.streamDone = nil
				return err
			case err := <-s.upDone:
				s.upResult = &err
				s.upDone = nil
				s.runCancel()
				return err
			}
		}
	}
}

// start starts one agent run.
func (s *supervisor) start() (*agentRun, error) {
	resume, reports := s.conv.get()
	argv := s.opts.Command
	if f := adapters[s.opts.Protocol].resumeArgs; f != nil && resume != "" {
		argv = f(argv, resume)
	}
	if resume != "" {
		s.log.Info("resuming the agent's conversation", "id", resume)
	}
	proc, err := s.opts.Killer.start(process.Spec{
		Argv:   argv,
		Env:    agentEnv(s.opts.Env, s.opts.Session, s.opts.Protocol, resume, s.instance),
		Dir:    s.opts.Dir,
		Logger: s.log.With("agent", filepath.Base(s.opts.Command[0])),
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("agent started", "pid", proc.Pid())
	s.mu.Lock()
	s.agentPid, s.baseline, s.abortedTurn, s.promptSnaps = proc.Pid(), nil, "", nil
	s.mu.Unlock()
	r := &agentRun{proc: proc, cmds: make(chan protocol.Command, agentCommandBuffer), done: make(chan struct{}), resumed: resume, reports: reports}
	go func() {
		defer close(r.done)
		served := make(chan error, 1)
		go func() { served <- s.serve(proc, r.cmds, resume) }()
		// The agent closed stdout but may live on; without stdout it is
		// of no use, so it gets the shutdown grace and then the kill.
		// The grace starts when stdout ends, not only when serve
		// returns: an agent that no longer reads its stdin can hold
		// the adapter in a write to it until the agent is gone.
		var grace *time.Timer
		var graceC <-chan time.Time
		startGrace := func() {
			if grace == nil {
				grace = time.NewTimer(s.opts.ShutdownGrace)
				graceC = grace.C
			}
		}
		ended, exited := proc.StdoutEnded(), proc.Done()
		for served != nil || exited != nil {
			select {
			case err := <-served:
				served = nil
				if err != nil {
					s.log.Warn("agent adapter stopped", "err", err)
				}
				if err != nil && !s.gone(proc) {
					// Events can no longer be delivered: nothing to
					// wait for.
					r.stopping("agentd stopped the agent: " + err.Error())
					_ = proc.Signal(syscall.SIGKILL)
				}
				startGrace()
			case <-ended:
				ended = nil
				startGrace()
			case <-graceC:
				graceC = nil
				s.log.Warn("agent closed stdout but did not exit; killing it")
				r.stopping("agentd stopped the agent: it closed its stdout but did not exit")
				_ = proc.Signal(syscall.SIGKILL)
			case <-exited:
				exited, graceC = nil, nil
			}
		}
		if grace != nil {
			grace.Stop()
		}
		r.exit = proc.Wait()
		s.opts.Killer.exited(proc)
	}()
	return r, nil
}

// gone reports whether the agent ended on its own account before its
// adapter failed: it ended its output (a crash does; ACP's handshake then
// fails for want of the connection), or it had exited before agentd gave
// up on its last events (runCtx cancelled: the adapter's emit failed
// then). agentd then stops nothing, and must not say it did: an agent
// that lives on without stdout gets the grace from its stdout's end, and
// that reason. (An adapter that gives up on a live agent closes the
// agent's stdout before its stdin, so the agent's exit in answer cannot
// pass for an end of its own.)
func (s *supervisor) gone(proc *process.Process) bool {
	select {
	case <-proc.StdoutEnded():
		return true
	default:
	}
	if s.runCtx.Err() == nil {
		return false
	}
	select {
	case <-proc.Done():
		return true
	default:
		return false
	}
}

// serve runs the protocol adapter until the agent's stdout ends.
func (s *supervisor) serve(proc *process.Process, cmds <-chan protocol.Command, resume string) error {
	name := filepath.Base(s.opts.Command[0])
	cwd := s.opts.Dir
	if cwd == "" {
		cwd, _ = os.Getwd()
	}
	if adapters[s.opts.Protocol].handshake {
		ev := protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: name, Protocol: s.opts.Protocol}, Cwd: cwd}
		if err := s.emitFromAgent(s.runCtx, ev); err != nil {
			s.log.Error("event not queued", "type", ev.Type, "err", err)
		}
	}
	return s.adapter.serve(s.runCtx, agentIO{
		Stdin: proc.Stdin, Stdout: proc.Stdout, Commands: cmds, Emit: s.emitFromAgent,
		Name: name, Cwd: cwd, Transcript: s.opts.Transcript, Logger: s.log.With("agent", name),
		Resume: resume, Conversation: s.conv.report,
	})
}

// watch handles commands and signals while r runs, handing the agent
// pending first. stop reports that the daemon is stopping (ctx done or
// fatal error); the run has ended either way.
func (s *supervisor) watch(ctx context.Context, r *agentRun, pending []protocol.Command) (stop bool, fatal error) {
	for _, c := range pending {
		s.queued(c)
	}
	// backedUp: the agent's channel was full with pending left over, and
	// that was logged.
	backedUp := false
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	var esc *escalation
	// While stopping: the agent's exit, then FlushTimeout after it
	// (agentGone, giveUp).
	var agentGone <-chan struct{}
	var giveUp <-chan time.Time
	arm := func(e *escalation, first time.Duration) {
		esc = e
		timer.Stop()
		timer.Reset(first)
	}
	stopAgent := func() {
		if stop {
			return
		}
		stop = true
		r.cancelled = true
		// Not taken: the next agentd gets them again.
		pending = nil
		// An event the state dir's disk refuses can no longer wait for
		// it: the adapter would hold the run open, and agentd with it.
		// (A shutdown signal has done this already, in Run; a final
		// error from the command stream has not.)
		s.up.StopWaiting()
		if !s.handOver(r, protocol.Command{Type: protocol.CommandShutdown}) {
			s.log.Warn("agent is not reading its commands; stopping it with signals after the grace")
		}
		arm(&escalation{signals: []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}}, s.opts.ShutdownGrace)
		agentGone = r.proc.Done()
	}
	ctxDone := ctx.Done()
	for {
		for len(pending) > 0 {
			// An answer is checked as it is handed over, not as it
			// arrives: behind a backlog the agent may have resolved its
			// request, and asked another under the id, meanwhile.
			if why := s.perms.refuse(pending[0]); why != "" {
				s.notApplied(pending[0], why)
			} else if !s.handOver(r, pending[0]) {
				break
			}
			pending = pending[1:]
		}
		// While the agent's channel is full, the command stream is not
		// read: it waits (and the server keeps the commands) rather
		// than a command being dropped.
		in := s.commands
		var out chan<- protocol.Command
		var head protocol.Command
		var permsChanged <-chan struct{}
		if len(pending) > 0 {
			in, out, head, permsChanged = nil, r.cmds, pending[0], s.perms.changed
			if !backedUp {
				backedUp = true
				s.log.Warn("agent is not reading its commands; the command stream waits until it does", "waiting", len(pending))
			}
		} else if backedUp {
			backedUp = false
			s.log.Info("agent reads its commands again")
		}
		select {
		case <-r.done:
			s.untaken(r)
			if !stop {
				for _, c := range pending {
					s.dropForNoAgent(c)
				}
			}
			return stop, fatal
		case <-permsChanged:
			// A request stopped waiting: the answers held are checked
			// again (the loop's top) before one is handed over.
		case out <- head:
			pending = pending[1:]
			s.handedOver(head)
		case c := <-in:
			if s.cmds.received(c) {
				s.log.Info("command taken by the agent before agentd restarted; not given again", "id", c.ID, "type", c.Type)
				continue
			}
			if stop {
				continue // not taken: the next agentd gets it again
			}
			if c.Type == protocol.CommandAbort {
				s.markAborted()
			}
			if c.Type == protocol.CommandAbort && esc == nil {
				// An end still unread is of a turn before the open one
				// (or of the last agent's): it must not call this off.
				select {
				case <-s.turnEnded:
				default:
				}
				if turn, open := s.openTurn(); open {
					arm(&escalation{signals: []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL}, abort: true, turn: turn}, s.opts.AbortGrace)
				}
			}
			s.queued(c)
			pending = append(pending, c)
		case <-agentGone:
			// The run still ends only once the adapter has emitted all
			// the agent wrote, and an emit waits while the queue is full:
			// with the server unreachable (in memory; with a state dir,
			// an outbox at --outbox-max-bytes), for as long as it stays
			// so, and agentd would not stop. That wait is the flush's:
			// it gets FlushTimeout.
			agentGone = nil
			s.giveUpAt = time.Now().Add(s.opts.FlushTimeout)
			t := time.NewTimer(s.opts.FlushTimeout)
			defer t.Stop()
			giveUp = t.C
		case <-giveUp:
			giveUp = nil
			// From now on an event of the agent's is queued if there is
			// room and otherwise dropped at once, logged as not queued.
			s.runCancel()
			if s.emitting.Load() > 0 {
				s.flushSpent = true
				s.log.Warn("the agent's last events are still waiting for the server at shutdown; not queuing them", "within", s.opts.FlushTimeout)
			}
		case <-s.connected:
			s.repostStarted()
		case turn := <-s.turnEnded:
			if esc != nil && esc.abort && turn == esc.turn {
				// The agent honoured the abort (perhaps after SIGINT).
				r.calledOff(esc.why)
				esc = nil
				timer.Stop()
			}
		case <-timer.C:
			if esc == nil || len(esc.signals) == 0 {
				continue
			}
			if esc.abort {
				if turn, open := s.openTurn(); !open || turn != esc.turn {
					// The aborted turn ended (and perhaps the next
					// began, which nobody aborted).
					r.calledOff(esc.why)
					esc = nil
					continue
				}
				r.cancelled = true
				if len(esc.signals) == 3 {
					// First, what the turn started: signals to the
					// agent's group miss processes in groups of their own.
					s.mu.Lock()
					s.reapTurnLocked()
					s.mu.Unlock()
				}
			}
			if !exited(r.proc) && esc.why == nil {
				why := "agentd stopped the agent: it did not exit within --shutdown-grace of being asked to"
				if esc.abort {
					why = "agentd stopped the agent: the aborted turn did not end within --abort-grace"
				}
				esc.why = r.stopping(why)
			}
			sig := esc.signals[0]
			esc.signals = esc.signals[1:]
			s.log.Warn("agent did not stop in time; signalling its process group", "signal", process.SignalName(sig), "abort", esc.abort)
			if err := r.proc.Signal(sig); err != nil {
				s.log.Error("signal agent", "err", err)
			}
			timer.Reset(s.opts.KillStep)
		case <-ctxDone:
			ctxDone = nil
			if s.opts.Killer != nil {
				s.log.Info("shutting down: asking the agent to exit", "note", "a second SIGINT/SIGTERM kills the agent and stops at once")
			} else {
				s.log.Info("shutting down: asking the agent to exit")
			}
			stopAgent()
		case err := <-s.streamDone:
			s.streamRes = &err
			s.streamDone = nil
			if err != nil {
				fatal = err
				s.log.Error("command stream refused; stopping the agent", "err", err)
			}
			stopAgent()
		case err := <-s.upDone:
			s.upResult = &err
			s.upDone = nil
			fatal = err
			s.log.Error("uploader stopped; stopping the agent", "err", err)
			// Nothing can be posted any more: let emitters fail fast.
			s.runCancel()
			stopAgent()
		}
	}
}

// ended reports the end of a run: agent_exited, then the end of any turn
// the agent left open.
func (s *supervisor) ended(r *agentRun, stopping bool) {
	exit := r.exit
	if stopping {
		s.log.Info("agent stopped", "exit", exit.String())
	} else {
		s.log.Error("agent exited unexpectedly", "exit", exit.String())
		if _, reports := s.conv.get(); r.resumed != "" && reports == r.reports && exit.Ran < s.opts.HealthyRun {
			// Most likely the resume itself failed (Claude Code exits
			// at once when it has no such session): retrying it would
			// fail the same way.
			s.conv.forget("agent " + exit.String() + " soon after starting to resume it")
		}
	}
	// The turn ends first: agent_exited closes a turn still open as
	// failed, which would hide that agentd cancelled it.
	s.mu.Lock()
	turnID, open := s.turnID, s.turnOpen
	s.turnOpen, s.turnID, s.started = false, "", nil
	s.agentPid, s.baseline, s.abortedTurn, s.promptSnaps = 0, nil, "", nil
	s.mu.Unlock()
	why := ""
	if p := r.why.Load(); p != nil {
		why = *p
	}
	emit := s.emit
	if stopping {
		// A shutdown signal has ended ownCtx (and a fatal error may
		// end the uploader): these, the run's last events, get what is
		// left of the time its output had.
		emit = s.emitLast
	}
	if open {
		end := protocol.Event{Type: protocol.EventTurnCompleted, TurnID: turnID, StopReason: protocol.StopError, Error: "agent " + exit.String()}
		if why != "" {
			end.Error += " (" + why + ")"
		}
		if r.cancelled {
			end.StopReason = protocol.StopCancelled
		}
		emit(end)
	}

	ev := protocol.Event{Type: protocol.EventAgentExited, ExitStatus: exit.Code, Signal: exit.Signal}
	if exit.Err != nil {
		ev.Error = exit.Err.Error()
	}
	if why != "" {
		ev.Error = strings.TrimPrefix(ev.Error+"; "+why, "; ")
	}
	emit(ev)
}

// queued notes a command bound for the running agent: a prompt's
// baseline of processes is taken before the agent can act on it.
func (s *supervisor) queued(c protocol.Command) {
	if c.Type == protocol.CommandPrompt {
		s.mu.Lock()
		if b := s.snapshotLocked(); b != nil {
			s.promptSnaps = append(s.promptSnaps, b)
		}
		s.mu.Unlock()
	}
}

// handOver gives the running agent c if its channel has room, without
// blocking the loop. c is taken (and recorded so) before it is sent: the
// agent may act on it at once, and an agentd killed before the record
// would have its successor give the abort again, to a turn nobody
// aborted. Only this loop sends on r.cmds, so room now is room for the
// send.
func (s *supervisor) handOver(r *agentRun, c protocol.Command) bool {
	if len(r.cmds) == cap(r.cmds) {
		return false
	}
	s.handedOver(c)
	r.cmds <- c
	return true
}

// handedOver: an abort or an answer is taken once handed over; a prompt
// when its turn starts.
func (s *supervisor) handedOver(c protocol.Command) {
	if c.Type != protocol.CommandPrompt {
		s.cmds.took(c.ID)
	}
	if c.Type == protocol.CommandAbort {
		// As handed over, not as received: an answer ahead of it in
		// the queue reaches the agent first, and counts.
		s.perms.aborted(c.ID)
	}
}

// untaken handles the commands handed to the run r that its adapter never
// read (the native adapter reads none while the agent's stdin pipe is
// full): r has ended, and nothing reads them now. A prompt is not taken
// until its turn starts, so it waits for the next agent with those not
// handed over. An abort was for the turn that ended with the agent. A
// permission answer was counted as taken when handed over, yet its
// request ended with the agent: the transcript is told, as for an
// answer that reaches agentd while no agent runs (dropForNoAgent), or it
// would vanish. An answer the adapter
// did write into a pipe the agent never read cannot be told apart from
// one the agent read and acted on, and is not told.
func (s *supervisor) untaken(r *agentRun) {
	for {
		select {
		case c := <-r.cmds:
			if c.Type == protocol.CommandPermissionResponse {
				s.notApplied(c, "the agent exited before it read the answer (its requests ended with it)")
			}
		default:
			return
		}
	}
}

// emitFromAgent is the adapters' Emit: it tracks the turn and the agent's
// agent_started, then queues the event (blocking when the queue is full).
func (s *supervisor) emitFromAgent(ctx context.Context, ev protocol.Event) error {
	// again: a turn_started of the turn already open, which the reducer
	// takes as that turn (an agent's retry): it starts no turn and takes
	// no prompt. Counted as a new turn it would take the next prompt,
	// which the agent has not started: a crash would then lose it.
	again := false
	s.mu.Lock()
	switch ev.Type {
	case protocol.EventTurnStarted:
		if s.turnOpen && s.turnID == ev.TurnID {
			again = true
			break
		}
		s.turnID, s.turnOpen = ev.TurnID, true
		s.abortedTurn = ""
		if ev.Source == protocol.SourceUser && len(s.promptSnaps) > 0 {
			s.baseline, s.promptSnaps = s.promptSnaps[0], s.promptSnaps[1:]
		} else {
			s.baseline = s.snapshotLocked()
		}
	case protocol.EventTurnCompleted:
		if s.turnOpen && ev.TurnID != "" && ev.TurnID != s.turnID {
			// The end of another turn than the open one, which the
			// reducer leaves running: it ends nothing here either, or
			// an abort's escalation would be called off and the
			// aborted turn left running with nobody to end it.
			break
		}
		// The turn this ends: the open one (an end naming another
		// ended nothing, above), named or not, since turnId is optional.
		if s.turnOpen && s.abortedTurn != "" && s.abortedTurn == s.turnID {
			// Before the turn is reported over (and before the agent
			// starts another): nothing the aborted turn started lives on.
			s.reapTurnLocked()
		}
		ended := s.turnID
		s.turnID, s.turnOpen = "", false
		// The latest end replaces one the loop has not read (only this
		// sends, under s.mu, so the slot is then free).
		select {
		case <-s.turnEnded:
		default:
		}
		s.turnEnded <- ended
	case protocol.EventAgentStarted:
		c := ev
		s.started = &c
	}
	s.mu.Unlock()
	s.emitting.Add(1)
	err := s.up.EnqueueStamped(ctx, ev, s.perms.queued(ev))
	s.emitting.Add(-1)
	if err != nil {
		return err
	}
	if testHookQueued != nil {
		testHookQueued(ev)
	}
	if ev.Type == protocol.EventTurnStarted && ev.Source != protocol.SourceAgent && !again {
		// Logged first, the cursor after: a crash between the two leaves
		// the turn open in the log, which the restart closes as
		// interrupted, and the prompt untaken, which it runs again as a
		// new turn (the transcript shows both, truthfully). The other
		// order could lose the prompt with no trace of its turn.
		s.cmds.turnStarted()
	}
	return nil
}

// emit queues an event of agentd's own. Failure means the uploader has
// stopped, which the loop reports; the event is logged so it is not lost
// silently.
func (s *supervisor) emit(ev protocol.Event) {
	s.emitWithin(s.ownCtx, ev)
}

// emitLast emits one of the last events of a run agentd stopped: it waits
// for room in a full queue until the agent's own last events stopped
// waiting (giveUpAt, or FlushTimeout from now when the run ended before
// its agent was seen gone), and then, like them, is given up, and the
// flush does not wait again.
func (s *supervisor) emitLast(ev protocol.Event) {
	at := s.giveUpAt
	if at.IsZero() {
		at = time.Now().Add(s.opts.FlushTimeout)
		s.giveUpAt = at
	}
	ctx, cancel := context.WithDeadline(s.runCtx, at)
	defer cancel()
	if !s.emitWithin(ctx, ev) && ctx.Err() != nil && s.runCtx.Err() == nil {
		s.flushSpent = true
	}
}

// emitWithin queues ev, waiting for room until ctx is done; false if it
// was not queued (logged).
func (s *supervisor) emitWithin(ctx context.Context, ev protocol.Event) bool {
	if err := s.up.EnqueueStamped(ctx, ev, s.perms.queued(ev)); err != nil {
		s.log.Error("event not queued", "type", ev.Type, "err", err)
		return false
	}
	return true
}

// dropForNoAgent handles a command that reached agentd while no agent
// runs. A prompt waits for the next agent (it is not taken); an abort was
// for the agent that died with its turn, and is dropped; so is a
// permission answer, whose request ended with that agent, but the
// transcript is told (notApplied), as for every answer agentd does not
// hand over (docs/PROTOCOL.md), or the user's answer would vanish.
func (s *supervisor) dropForNoAgent(c protocol.Command) {
	switch c.Type {
	case protocol.CommandPrompt:
	case protocol.CommandPermissionResponse:
		s.notApplied(c, "the agent is not running (it exited, and its requests ended with it)")
	default:
		s.log.Info("agent not running; dropping command", "id", c.ID, "type", c.Type)
		s.cmds.took(c.ID)
	}
}

// notApplied drops the answer c, which the agent must not get (why, see
// permissionLog.refuse), and says so in the transcript: the server
// accepted the answer, and its sender would otherwise believe it decided
// something. It counts as taken: it must not come again.
func (s *supervisor) notApplied(c protocol.Command, why string) {
	s.log.Warn("permission answer not given to the agent", "id", c.ID, "requestId", c.RequestID, "requestAgentSeq", c.RequestAgentSeq, "why", why)
	s.emit(notapplied.Notice(c, why))
	s.cmds.took(c.ID)
}

// snapshotLocked lists the processes below the agent and those agentd
// adopted (nil when it cannot list the first).
func (s *supervisor) snapshotLocked() *processes {
	if s.agentPid == 0 {
		return nil
	}
	b, err := process.Descendants(s.agentPid)
	if err != nil {
		s.log.Warn("cannot list the agent's processes; an aborted turn's leftovers will not be killed", "err", err)
		return nil
	}
	a, err := process.Adopted()
	if err != nil {
		s.log.Warn("cannot list the processes agentd adopted; those an aborted turn orphans will not be killed before the agent's run ends", "err", err)
	}
	return &processes{below: b, adopted: a}
}

// markAborted notes that the user aborted the open turn.
func (s *supervisor) markAborted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turnOpen {
		s.abortedTurn = s.turnID
	}
}

// reapTurnLocked kills the processes the aborted turn started, whatever
// the agent said about them (Codex, for one, keeps an interrupted
// command running as a background terminal): those below the agent,
// and those agentd adopted meanwhile (a process in a session of its own
// whose parent exited), which are not below the agent any more. The
// agent itself is neither below itself nor adopted.
func (s *supervisor) reapTurnLocked() {
	if s.baseline == nil || s.agentPid == 0 {
		return
	}
	n, err := process.KillNew(s.agentPid, s.baseline.below)
	if err != nil {
		s.log.Error("kill the aborted turn's processes", "err", err)
	}
	if s.baseline.adopted != nil {
		m, err := process.KillNewOrphans(s.baseline.adopted)
		if err != nil {
			s.log.Error("kill the processes the aborted turn orphaned", "err", err)
		}
		n += m
	}
	if n > 0 {
		s.log.Warn("killed processes the aborted turn left running", "count", n, "turn", s.abortedTurn)
	}
	s.abortedTurn = ""
}

// exited reports whether proc has exited.
func exited(proc *process.Process) bool {
	select {
	case <-proc.Done():
		return true
	default:
		return false
	}
}

// openTurn is the open turn's id; open is false between turns.
func (s *supervisor) openTurn() (id string, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.turnID, s.turnOpen
}

// repostStarted re-sends agent_started after a command stream reconnect,
// so the server re-derives idle/live for a sandbox it saw disconnect.
func (s *supervisor) repostStarted() {
	s.mu.Lock()
	var ev *protocol.Event
	if s.started != nil {
		c := *s.started
		ev = &c
	}
	s.mu.Unlock()
	if ev != nil {
		if testHookReposting != nil {
			testHookReposting(s.up.Len())
		}
		s.emit(*ev)
	}
}
