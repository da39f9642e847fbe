// labapp: the lab tests' application, one static binary in a one-layer image.
//
//	labapp serve ADDR          HTTP: "<pod name> <remote address>" on /, logs each request
//	labapp get URL             GET URL, print the body; exit 1 unless 200
//	labapp resolve NAME SERVER A records of NAME from the DNS server SERVER (the book's dig @<dns ip>)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: labapp serve ADDR | get URL | resolve NAME SERVER")
	}
	switch os.Args[1] {
	case "serve":
		name, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("request %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
			fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
		})
		fail(http.ListenAndServe(os.Args[2], nil).Error())
	case "get":
		client := http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(os.Args[2])
		if err != nil {
			fail(err.Error())
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Print(string(body))
		if resp.StatusCode != 200 {
			fail(resp.Status)
		}
	case "resolve":
		if len(os.Args) < 4 {
			fail("usage: labapp resolve NAME SERVER")
		}
		resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, "udp", net.JoinHostPort(os.Args[3], "53"))
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := resolver.LookupHost(ctx, os.Args[2])
		if err != nil {
			fail(err.Error())
		}
		for _, a := range addrs {
			fmt.Println(a)
		}
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(1)
}
