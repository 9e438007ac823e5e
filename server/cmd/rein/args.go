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
func permute(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Skip the global flags to find the subcommand.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	out := append([]string{}, args[:i+1]...)
	var flags, pos []string
	help := false
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			help = help || isHelp(a)
			if takesValue(cmd.Flags, a) && j+1 < len(rest) {
				j++
				flags = append(flags, rest[j])
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) > 0 && !help {
		pos = append([]string{"--"}, pos...)
	} else {
		// "rein watch s1 --help" is the help of watch: left in, the
		// arguments would make urfave/cli look up "s1" as a command.
		pos = nil
	}
	return append(append(out, flags...), pos...)
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
