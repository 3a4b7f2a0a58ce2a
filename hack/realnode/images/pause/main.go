package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	go func() { // reap zombies (pause is PID 1 of the pod when PID namespace is shared)
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGCHLD)
		for range ch {
			for {
				var ws syscall.WaitStatus
				if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 {
					break
				}
			}
		}
	}()
	<-c
}
