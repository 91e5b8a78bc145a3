package task

// PaymentMessageFor is the success message of a payment, for the tests to
// compare with.
var PaymentMessageFor = newPaymentMessage
