#pragma once

namespace relaywatch::detectors {

// The text of conf/signatures.yaml as shipped, compiled in.
const char* BuiltinSignatures();

}  // namespace relaywatch::detectors
