use sixfold_model_checks::membership::{CheckOptions, Config, run_check};
use sixfold_model_checks::Stop;
#[test]
fn measure() {
    for name in ["composed-live", "reference"] {
        let report = run_check(&CheckOptions {
            config: Config::named(name).unwrap(),
            bug: None,
            threads: 1,
            progress: false,
            stop: Stop::Exhaustive,
            time_limit: Some(std::time::Duration::from_secs(120)),
        });
        println!("{report}");
    }
}
