package stack

import "strings"

// LBImage is the image name that makes a service a load balancer.
const LBImage = "kontena/lb"

// IsLB tells whether a service is a load balancer: its image is
// kontena/lb (any tag) or its environment says KONTENA_SERVICE_ROLE=lb.
// No image is pulled for one: each node runs it from its own executable.
func IsLB(s *Service) bool {
	if v, ok := s.Env("KONTENA_SERVICE_ROLE"); ok && strings.EqualFold(strings.TrimSpace(v), "lb") {
		return true
	}
	img := s.Image
	if i := strings.LastIndexByte(img, '@'); i >= 0 {
		img = img[:i]
	}
	if i := strings.LastIndexByte(img, ':'); i > strings.LastIndexByte(img, '/') {
		img = img[:i]
	}
	img = strings.TrimPrefix(strings.TrimPrefix(img, "docker.io/"), "library/")
	return img == LBImage
}

// LinksTo tells whether service s (of stack) links to the service id
// ("<stack>/<service>").
func LinksTo(s *Service, stackName, id string) bool {
	for _, l := range s.Links {
		if l.Target(stackName) == id {
			return true
		}
	}
	return false
}

// Target is the ID ("<stack>/<service>") of the service a link of a
// service in stackName names.
func (l Link) Target(stackName string) string {
	if l.Stack != "" {
		stackName = l.Stack
	}
	return stackName + "/" + l.Service
}
