package kafka

// Permanent is permanent, for the tests.
var Permanent = permanent
