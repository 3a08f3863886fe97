// The provider's own main (cmd/pulumi-resource-kubernetes) embeds schema-embed.json, a file its Makefile generates
// and the module does not ship; this one embeds the module's schema.json and terraform-mapping.json, copied here by
// e2e/build-tools.sh, and serves the same provider.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema.json
var pulumiSchema []byte

//go:embed terraform-mapping.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
