// The gopher-lua runner of test/peer/argocd/health-lua.test.ts (built by test/peer/argocd/setup.sh).
module vmmem.dev/test/peer/argocd/gopher-lua

go 1.26.0

require github.com/yuin/gopher-lua v1.1.1
