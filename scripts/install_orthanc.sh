#!/usr/bin/env bash
# Install Orthanc and its DICOMweb plugin from Debian packages (for the PACS integration tests and CI).
# The Debian package starts a system Orthanc service where systemd runs; the tests start their own on
# free loopback ports, so the packaged service is left as the system configured it.
set -euo pipefail
exec "$(dirname "$0")/install_debian_packages.sh" orthanc orthanc-dicomweb
