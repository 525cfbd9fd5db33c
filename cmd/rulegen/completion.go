package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	flag "github.com/spf13/pflag"
)

// subcommands are the words rulegen takes before its flags.
var subcommands = []string{"trace", "explain", "completion"}

// completionScript is the shell completion of `rulegen completion SHELL`:
// subcommands as the first word, then the flags of the daemon or of the
// subcommand, then file names (for -f, --config, --kubeconfig). The words
// come from the same flag sets run parses, so the script never lists a
// flag rulegen would refuse. kube-proxy's names that rulegen honours (its
// aliases) are offered; the hidden ones it only ignores or refuses, and
// deprecated flags, are not.
func completionScript(shell string) (string, error) {
	words := func(sub string) string {
		fs := newFlags(&options{}, io.Discard)
		if sub != "" {
			addQueryFlags(fs, sub, &query{})
		}
		var w []string
		fs.VisitAll(func(f *flag.Flag) {
			if f.Deprecated != "" || (f.Hidden && !kubeProxyAlias(f.Name)) {
				return
			}
			w = append(w, "--"+f.Name)
			if f.Shorthand != "" && f.ShorthandDeprecated == "" {
				w = append(w, "-"+f.Shorthand)
			}
		})
		slices.Sort(w)
		return strings.Join(w, " ")
	}
	var b strings.Builder
	switch shell {
	case "bash":
	case "zsh":
		b.WriteString("# zsh: bash's completion through bashcompinit\nautoload -U +X bashcompinit && bashcompinit\n")
	default:
		return "", fmt.Errorf("completion: %q is not bash or zsh", shell)
	}
	fmt.Fprintf(&b, `# rulegen completion: source it, e.g. source <(rulegen completion %s)
_rulegen() {
	local cur=${COMP_WORDS[COMP_CWORD]} words
	case ${COMP_WORDS[1]} in
	trace) words=%q ;;
	explain) words=%q ;;
	completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")); return ;;
	*) words=%q ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
	elif [[ $COMP_CWORD -eq 1 ]]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}
complete -o default -F _rulegen rulegen
`, shell, words("trace"), words("explain"), words(""), strings.Join(subcommands, " "))
	return b.String(), nil
}

// kubeProxyAlias reports whether name is a kube-proxy flag rulegen honours
// under a name of its own.
func kubeProxyAlias(name string) bool {
	for _, k := range kubeProxyFlags {
		if k.name == name {
			return k.kind == kpAlias
		}
	}
	return false
}
