// Command etcd is the etcd server the control plane stores its state in, built from the same
// module graph as Kubernetes so one `go build` compiles the shared packages once.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
