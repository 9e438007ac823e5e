package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permute moves a subcommand's flags in front of its positional
// arguments, so "rein watch ID --until-idle" works: urfave/cli/v2 stops
// parsing flags at the first positional argument. Everything after "--"
// stays positional (for a prompt that starts with "-"). With --help the
// positional arguments are dropped, so the help shown is the command's.
//
// A command's first positional argument that names one of its
// subcommands ("rein inbox -p web approve 2") is that subcommand: the
// flags before it stay the command's, the rest is the subcommand's.
func permute(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Skip the global flags to find the command, then its flags to find
	// a subcommand, and so on.
	var cmd *cli.Command
	flags, cmds := app.Flags, app.Commands
	help := false
	i := 1
	for {
		for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
			help = help || isHelp(args[i])
			if takesValue(flags, args[i]) {
				i++
			}
			i++
		}
		if i >= len(args) {
			break
		}
		sub := findCommand(cmds, args[i])
		if sub == nil {
			break
		}
		cmd, flags, cmds = sub, sub.Flags, sub.Subcommands
		i++
	}
	if cmd == nil || i >= len(args) {
		return args
	}
	out := append([]string{}, args[:i]...)
	var pos []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			out = append(out, a)
			help = help || isHelp(a)
			if takesValue(flags, a) {
				if j+1 == len(rest) {
					// Its value is missing ("rein create s1
					// --prompt"): left last, urfave/cli says "flag
					// needs an argument". Followed by the "--" below,
					// it would take "--" as its value, and the
					// session would get the prompt "--".
					return out
				}
				j++
				out = append(out, rest[j])
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 || help {
		// "rein watch s1 --help" is the help of watch: left in, the
		// arguments would make urfave/cli look up "s1" as a command.
		return out
	}
	return append(append(out, "--"), pos...)
}

// findCommand returns the command of cmds named (or aliased) name, nil
// when there is none.
func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// isHelp reports whether arg is --help or -h.
func isHelp(arg string) bool {
	name := strings.TrimLeft(arg, "-")
	for _, n := range cli.HelpFlag.Names() {
		if name == n {
			return true
		}
	}
	return false
}

// takesValue reports whether arg ("--name", "-n"; not "--name=v") names
// one of flags that needs a value.
func takesValue(flags []cli.Flag, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
