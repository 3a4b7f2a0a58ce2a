// tool: serve | apiget | get URL | id
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: tool serve|apiget|get URL|id")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		h, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s uid=%d\n", h, os.Getuid())
			fmt.Printf("request from %s %s\n", r.RemoteAddr, r.URL.Path)
		})
		fmt.Printf("serving on :8080 as uid=%d\n", os.Getuid())
		if err := http.ListenAndServe(":8080", nil); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	case "id":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		b, _ := os.ReadFile("/proc/self/status")
		os.Stdout.Write(b)
	case "get":
		c := http.Client{Timeout: 5 * time.Second}
		r, err := c.Get(os.Args[2])
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Printf("%s %s", r.Status, b)
	case "apiget":
		sa := "/var/run/secrets/kubernetes.io/serviceaccount/"
		tok, err := os.ReadFile(sa + "token")
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		ca, _ := os.ReadFile(sa + "ca.crt")
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		url := "https://" + os.Getenv("KUBERNETES_SERVICE_HOST") + ":" + os.Getenv("KUBERNETES_SERVICE_PORT") + "/api"
		path := "/api"
		if len(os.Args) > 2 {
			path = os.Args[2]
			url = "https://" + os.Getenv("KUBERNETES_SERVICE_HOST") + ":" + os.Getenv("KUBERNETES_SERVICE_PORT") + path
		}
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+string(tok))
			r, err := c.Do(req)
			if err != nil {
				fmt.Println("ERR", url, err)
			} else {
				b, _ := io.ReadAll(r.Body)
				fmt.Printf("GET %s -> %s %s\n", url, r.Status, b)
			}
			if os.Getenv("LOOP") == "" {
				if err != nil {
					os.Exit(1)
				}
				return
			}
			time.Sleep(10 * time.Second)
		}
	default:
		fmt.Println("unknown")
		os.Exit(2)
	}
}
