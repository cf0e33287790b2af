"""The AWS side of a release: what an EMR job run is given (`submit`). Packaging and upload are
`make package` and aws/scripts/deploy.sh."""
