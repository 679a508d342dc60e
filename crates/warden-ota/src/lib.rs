//! The SCP81 / GlobalPlatform Amendment B admin server (see the OTA issue).
