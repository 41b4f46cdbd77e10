//! The pagestream load generator and its reports (scenarios, latency
//! percentiles, loss and duplicate checks); empty until its scenarios land.
