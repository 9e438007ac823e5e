// Package tokenflags words the refusal of a client token given twice, as
// rein and rein-server both refuse it.
package tokenflags

import (
	"fmt"
	"os"
	"strings"
)

// Twice is the refusal of a token flag given together with its file
// flag (--token and --token-file, say). Either may come from the
// environment (the README's setup exports REIN_API_TOKEN_FILE for rein,
// and a rein-server started from that shell reads it too): the message
// names the variables set, or it speaks of a flag the user never typed.
func Twice(flag, fileFlag string) string {
	msg := fmt.Sprintf("give %s or %s, not both", flag, fileFlag)
	var set []string
	for _, v := range []string{"REIN_API_TOKEN", "REIN_API_TOKEN_FILE"} {
		if os.Getenv(v) != "" {
			set = append(set, v)
		}
	}
	if len(set) > 0 {
		msg += fmt.Sprintf(" (%s, set in the environment, counts as the flag; unset it)", strings.Join(set, " and "))
	}
	return msg
}
