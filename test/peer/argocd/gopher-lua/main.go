// Runs deploy/argocd/health.lua the way Argo CD runs a resource health script: gopher-lua (the Lua
// 5.1 VM Argo CD embeds), a fresh state per object with only the package, base and table libraries
// open, the object (decoded from JSON) as the global `obj`, and the table the script returns read
// back as {status, message}. Used by test/peer/argocd/health-lua.test.ts.
//
// Usage: gopher-lua-health <script.lua> < objects.json   (a JSON array; one JSON line out per object)
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// toLua converts a JSON value as Argo CD hands objects to the script: objects and arrays become
// tables (arrays 1-based), numbers LNumber, null is absent.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []interface{}:
		t := l.NewTable()
		for _, e := range x {
			t.Append(toLua(l, e))
		}
		return t
	case map[string]interface{}:
		t := l.NewTable()
		for k, e := range x {
			if e != nil {
				t.RawSetString(k, toLua(l, e))
			}
		}
		return t
	}
	panic(fmt.Sprintf("unexpected JSON value %T", v))
}

func run(script string, obj interface{}) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	t, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return result{Error: fmt.Sprintf("script returned %s, not a table", l.Get(-1).Type())}
	}
	status, _ := t.RawGetString("status").(lua.LString)
	message, _ := t.RawGetString("message").(lua.LString)
	return result{Status: string(status), Message: string(message)}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gopher-lua-health <script.lua> < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var objects []interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "objects:", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for _, o := range objects {
		if err := enc.Encode(run(string(script), o)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
