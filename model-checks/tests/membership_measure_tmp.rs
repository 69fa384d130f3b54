use sixfold_model_checks::Stop;
use sixfold_model_checks::membership::{CheckOptions, Config, run_check};
#[test]
fn measure() {
    for name in ["small", "composed", "two-moves", "reference"] {
        let report = run_check(&CheckOptions {
            config: Config::named(name).unwrap(),
            bug: None,
            threads: 2,
            progress: false,
            stop: Stop::Exhaustive,
            time_limit: Some(std::time::Duration::from_secs(400)),
        });
        println!("{report}");
    }
}
