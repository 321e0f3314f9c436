// Command lbbackend is the backend of bench/lb.sh: the same small answer on
// every port it is given, for HAProxy and the grid's load balancer alike.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

func main() {
	ports := flag.String("ports", "9101,9102", "comma-separated ports on 127.0.0.1")
	flag.Parse()
	body := []byte(strings.Repeat("x", 63) + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	for _, p := range strings.Split(*ports, ",") {
		ln, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			log.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { log.Fatal(srv.Serve(ln)) }()
	}
	select {}
}
