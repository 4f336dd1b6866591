//go:build !linux

package netif

import (
	"errors"
	"net"
)

var errNoPacketSockets = errors.New("netif: packet sockets need Linux")

// ListenARP is only implemented on Linux.
func ListenARP(ifi *net.Interface) (PacketConn, error) { return nil, errNoPacketSockets }

// ListenNDP is only implemented on Linux.
func ListenNDP(ifi *net.Interface) (PacketConn, error) { return nil, errNoPacketSockets }
