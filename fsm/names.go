package fsm

import "fmt"

// ContainerName is the name of instance n of a service, the one name the
// agent gives its container, DNS answers for and the CLI shows.
func ContainerName(stackName, service string, n int) string {
	return fmt.Sprintf("%s.%s-%d", stackName, service, n)
}
