package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docsCheckConfigCommands returns every `tokengate check-config` command
// the repository's markdown shows (fenced code lines and inline code
// spans), with the file and line it came from, comments cut.
func docsCheckConfigCommands(t *testing.T, root string) (cmds []docCommand) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "*.md").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	cmdRe := regexp.MustCompile(`^((?:[A-Z][A-Z0-9_]*=\S+\s+)*)(?:bin/)?tokengate check-config\b(.*)$`)
	inline := regexp.MustCompile("`([^`]+)`")
	for _, name := range strings.Fields(string(out)) {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		prose := make([]string, len(lines)) // the text outside fenced blocks, line for line
		fenced := false
		for i, line := range lines {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "```") {
				fenced = !fenced
				continue
			}
			if !fenced {
				prose[i] = line
				continue
			}
			cmd, _, _ := strings.Cut(trimmed, "#")
			if m := cmdRe.FindStringSubmatch(strings.TrimSpace(strings.TrimPrefix(cmd, "$ "))); m != nil {
				cmds = append(cmds, docCommand{where: name + ":" + strconv.Itoa(i+1), line: m[0], args: strings.Fields(m[2])})
			}
		}
		// Inline code spans may wrap across lines within a paragraph.
		text := strings.Join(prose, "\n")
		for _, m := range inline.FindAllStringSubmatchIndex(text, -1) {
			span := strings.Join(strings.Fields(text[m[2]:m[3]]), " ")
			if c := cmdRe.FindStringSubmatch(span); c != nil {
				line := strings.Count(text[:m[0]], "\n") + 1
				cmds = append(cmds, docCommand{where: name + ":" + strconv.Itoa(line), line: c[0], args: strings.Fields(c[2])})
			}
		}
	}
	return cmds
}

type docCommand struct {
	where string
	line  string // the command as the docs show it
	args  []string
}

// Every check-config command the docs show runs as written and passes:
// from the repository root (its example, users.yaml and deploy/ files), or
// from a deployment directory with config.yaml and users.yaml (the README's
// "Changing the users file"), with the users file a runbook writes to /tmp
// in a temp dir instead. Usage lines (`--config FILE`) are syntax, not
// commands. Before, deploy/README's command named a path relative to
// deploy/ and files that exist only in a pod, and exited 2.
func TestDocsCheckConfigCommands(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	cmds := docsCheckConfigCommands(t, root)
	if len(cmds) < 4 {
		t.Fatalf("found only %d check-config commands in the docs: the extraction is broken", len(cmds))
	}
	// The scratch directory stands for both places: the repository root
	// (config.example.yaml, users.yaml, deploy/) and a deployment
	// directory (config.yaml naming users.yaml, users.yaml.new beside).
	dir := t.TempDir()
	copyFile(t, filepath.Join(root, "config.example.yaml"), filepath.Join(dir, "config.example.yaml"))
	copyFile(t, filepath.Join(root, "config.example.yaml"), filepath.Join(dir, "config.yaml"))
	copyFile(t, filepath.Join(root, "users.yaml"), filepath.Join(dir, "users.yaml"))
	copyFile(t, filepath.Join(root, "users.yaml"), filepath.Join(dir, "users.yaml.new"))
	if err := os.Symlink(filepath.Join(root, "deploy"), filepath.Join(dir, "deploy")); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir() // for /tmp/... paths in a runbook
	copyFile(t, filepath.Join(root, "users.yaml"), filepath.Join(tmp, "users.yaml"))

	// `tokengate` on the PATH is the binary under test; each command runs
	// through bash as written ($PWD and VAR=value prefixes included).
	binDir := t.TempDir()
	if err := os.Symlink(binPath, filepath.Join(binDir, "tokengate")); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, c := range cmds {
		if strings.Contains(strings.Join(c.args, " "), "FILE") {
			continue // usage syntax
		}
		ran++
		cmd := exec.Command("bash", "-c", strings.ReplaceAll(c.line, "/tmp/", tmp+"/"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "PWD="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "configuration OK") {
			t.Errorf("%s: %s: %v\n%s", c.where, c.line, err, out)
		}
	}
	if ran < 4 {
		t.Errorf("ran only %d commands", ran)
	}
	t.Logf("ran %d check-config commands from the docs", ran)
}

// The repository stands alone: no file it holds cites the project's
// contract file or a directory outside the repository, whose contents a
// reader does not have (README.md holds the health rules and the
// performance budget).
func TestDocsStandAlone(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	outside := []string{"ARCHITECTURE" + ".md", "../" + "shared/"}
	for _, name := range strings.Fields(string(out)) {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue // a file deleted in the worktree
		}
		for _, s := range outside {
			if strings.Contains(string(b), s) {
				t.Errorf("%s cites %s, which is not in the repository", name, s)
			}
		}
	}
}

// The README's deploy-config folder for `docker run -v` is a working one:
// its commands, run in a scratch copy of the repository root, make a
// config that check-config passes with the users file it copied.
func TestREADMEDockerConfigFolder(t *testing.T) {
	block := readmeBlock(t, "A minimal one, made\nfrom the repository root")
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "..", "users.yaml"), filepath.Join(dir, "users.yaml"))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's deploy-config commands: %v\n%s", err, out)
	}
	out, errOut, code := runBin(t, dir, "", "check-config", "--config", "deploy-config/config.yaml")
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("check-config on the README's deploy-config: exit %d\n%s%s", code, out, errOut)
	}
}
